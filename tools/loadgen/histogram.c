/*
 * histogram.c: the logarithmic latency histogram described in histogram.h.
 */
#include <string.h>

#include "histogram.h"

/* the ranges cover [HIST_EXACT, HIST_EXACT << HIST_RANGES) */
_Static_assert(HIST_MAX_NS < ((uint64_t)HIST_EXACT << HIST_RANGES),
	       "HIST_RANGES too small to hold HIST_MAX_NS");

static unsigned bucket_of(uint64_t value)
{
	if (value < HIST_EXACT)
		return (unsigned)value;

	/* value lies in [2^top_bit, 2^(top_bit+1)); its top 8 bits pick the bucket */
	unsigned top_bit = 63 - (unsigned)__builtin_clzll(value);
	unsigned shift = top_bit - HIST_SUB_BITS;
	unsigned sub = (unsigned)(value >> shift) - HIST_SUB_BUCKETS;

	return HIST_EXACT + (shift - 1) * HIST_SUB_BUCKETS + sub;
}

/* Reporting the top of a bucket errs on the slow side, never flattering. */
static uint64_t highest_in_bucket(unsigned bucket)
{
	if (bucket < HIST_EXACT)
		return bucket;

	unsigned shift = (bucket - HIST_EXACT) / HIST_SUB_BUCKETS + 1;
	uint64_t sub = (bucket - HIST_EXACT) % HIST_SUB_BUCKETS + HIST_SUB_BUCKETS;

	return ((sub + 1) << shift) - 1;
}

void hist_init(struct hist *h)
{
	memset(h, 0, sizeof *h);
}

void hist_record(struct hist *h, uint64_t ns)
{
	if (ns > HIST_MAX_NS)
		ns = HIST_MAX_NS;
	h->counts[bucket_of(ns)]++;
	h->total++;
	if (ns > h->max)
		h->max = ns;
}

uint64_t hist_percentile(const struct hist *h, double percent)
{
	if (h->total == 0)
		return 0;

	/* the rank-th smallest sample, rank = ceil(percent% of total), at least 1 */
	double exact_rank = percent / 100.0 * (double)h->total;
	uint64_t rank = (uint64_t)exact_rank;
	if ((double)rank < exact_rank || rank == 0)
		rank++;

	uint64_t seen = 0;
	for (unsigned b = 0; b < HIST_BUCKETS; b++) {
		seen += h->counts[b];
		if (seen >= rank) {
			uint64_t value = highest_in_bucket(b);
			return value < h->max ? value : h->max;
		}
	}
	return h->max;
}
