/* husk: the runc-compatible command line (services/cli.h). */
#include "services/cli.h"

int main(int argc, char **argv)
{
    return cli_main(argc, argv);
}
