/* An echo actor in its own process, joined over ipc:// (bus tests).
 * usage: bus_peer ENDPOINT NAME */
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include "actors/actor.h"
#include "common/log.h"

static void on_echo(actor_t *a, msg_t **m, void *state)
{
    msg_t *r = msg_new_reply(*m, MSG_BUS_ECHO);
    msg_bus_echo_t *in = (*m)->body, *out = r->body;
    out->seq = in->seq;
    msg_set_bin(&out->data, in->data.data, in->data.len);
    actor_reply(a, *m, &r);
}

static const actor_handler_t handlers[] = {{MSG_BUS_ECHO, on_echo}, {MSG_NONE, NULL}};

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s ENDPOINT NAME\n", argv[0]);
        return 2;
    }
    log_setup(2, LOG_FMT_LOGFMT, LOG_WARN);
    actor_def_t def = {.name = argv[2], .handlers = handlers};
    actor_opts_t opts = {.endpoint = argv[1]};
    actor_t *a = NULL;
    err_t err = ERR_INIT;
    if (actor_start(&def, NULL, &opts, &a, &err) < 0) {
        fprintf(stderr, "bus_peer: %s\n", err_str(&err));
        return 1;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigprocmask(SIG_BLOCK, &set, NULL);
    int sig;
    sigwait(&set, &sig);
    actor_stop(&a, 2000);
    return 0;
}
