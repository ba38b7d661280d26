# Chapter 02 builds the server and two small programs the lesson runs.
PROGRAMS := echo_server counter_race thread_cost
echo_server_SRCS := echo_server.c
counter_race_SRCS := counter_race.c
thread_cost_SRCS := thread_cost.c
counter_race_LIBS := -pthread
thread_cost_LIBS := -pthread

# The server is threaded: make memcheck also runs the tests with it under
# Helgrind, which reports data races and lock misuse.
RACE_CHECK := helgrind
