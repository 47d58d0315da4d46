/* husk-trace: see tools/trace.h and docs/. */
#include "tools/trace.h"

int main(int argc, char **argv)
{
    return trace_main(argc, argv);
}
