# Chapter 02 is threaded: make memcheck also runs the tests with the server
# under Helgrind, which reports data races and lock misuse.
RACE_CHECK := helgrind
