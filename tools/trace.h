/* tools/trace: the husk-trace program, callable from its entry point
 * (tools/main_trace.c) and from tests.
 *
 * trace_main takes husk-trace's argv and returns its exit status: 0, 1 for
 * a failed replay, 2 for a usage error.  A fatal error (no such sandbox or
 * file, a corrupt recording, a bus that does not answer) prints
 * "husk-trace: what" on stderr and exits the process with status 1; tests
 * call it in a forked child. */
#ifndef HUSK_TOOLS_TRACE_H
#define HUSK_TOOLS_TRACE_H

int trace_main(int argc, char **argv);

#endif
