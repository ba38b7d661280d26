/*
 * histogram.h: a latency histogram with logarithmic buckets, after the idea
 * of HdrHistogram: fixed memory however many samples, < 1% relative error.
 */
#ifndef LOADGEN_HISTOGRAM_H
#define LOADGEN_HISTOGRAM_H

#include <stdint.h>

/*
 * Samples are nanoseconds.  Below HIST_EXACT every value has a bucket of its
 * own; above it, each power-of-two range [2^m, 2^(m+1)) is cut into
 * HIST_SUB_BUCKETS equal buckets, so no bucket is wider than 1/128 (0.8%) of
 * the values it holds.  HIST_RANGES such ranges reach past HIST_MAX_NS.
 */
#define HIST_SUB_BITS    7
#define HIST_SUB_BUCKETS (1u << HIST_SUB_BITS)
#define HIST_EXACT       (2 * HIST_SUB_BUCKETS)
#define HIST_RANGES      29
#define HIST_BUCKETS     (HIST_EXACT + HIST_RANGES * HIST_SUB_BUCKETS)
#define HIST_MAX_NS      100000000000ull /* 100 s: longer samples count as 100 s */

/* Embed it anywhere; read the fields, change them only through hist_*(). */
struct hist {
	uint64_t counts[HIST_BUCKETS];
	uint64_t total; /* samples recorded */
	uint64_t max;   /* the largest sample, exactly */
};

void hist_init(struct hist *h);
void hist_record(struct hist *h, uint64_t ns);

/* The value below which `percent` of the samples lie (0 when empty). */
uint64_t hist_percentile(const struct hist *h, double percent);

#endif
