/* A stand-in sandbox for husk-trace tests: a bus with ipc endpoints in DIR,
 * an echo actor and a ticker that asks it something every 50 ms.
 * Runs until SIGTERM/SIGINT.  usage: bus_sandbox DIR */
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include "actors/actor.h"
#include "bus/bus.h"
#include "common/log.h"

static void on_echo(actor_t *a, msg_t **m, void *state)
{
    msg_t *r = msg_new_reply(*m, MSG_BUS_ECHO);
    ((msg_bus_echo_t *)r->body)->seq = ((msg_bus_echo_t *)(*m)->body)->seq;
    actor_reply(a, *m, &r);
}

static void on_reply(actor_t *a, msg_t **reply, void *arg)
{
}

static void tick(actor_t *a, void *arg)
{
    static uint64_t seq;
    msg_t *m = msg_new(MSG_BUS_ECHO);
    ((msg_bus_echo_t *)m->body)->seq = ++seq;
    err_t err = ERR_INIT;
    actor_request(a, "echo", &m, 200, on_reply, NULL, &err);
    err_clear(&err);
}

static int ticker_init(actor_t *a, void *state, err_t *err)
{
    return actor_timer(a, 50, true, tick, NULL) ? 0 : err_make(err, 12, "timer");
}

static const actor_handler_t echo_h[] = {{MSG_BUS_ECHO, on_echo}, {MSG_NONE, NULL}};

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    log_setup(2, LOG_FMT_LOGFMT, LOG_WARN);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* threads inherit the mask */
    bus_t *bus = NULL;
    err_t err = ERR_INIT;
    bus_opts_t bo = {.dir = argv[1], .name = "sb"};
    if (bus_new(&bo, &bus, &err) < 0) {
        fprintf(stderr, "bus_sandbox: %s\n", err_str(&err));
        return 1;
    }
    actor_opts_t ao = {.zctx = bus_context(bus), .endpoint = bus_endpoint(bus), .sandbox = "sb"};
    actor_def_t echo = {.name = "echo", .handlers = echo_h};
    actor_def_t ticker = {.name = "ticker", .init = ticker_init};
    actor_t *e = NULL, *t = NULL;
    if (actor_start(&echo, NULL, &ao, &e, &err) < 0 ||
        actor_start(&ticker, NULL, &ao, &t, &err) < 0) {
        fprintf(stderr, "bus_sandbox: %s\n", err_str(&err));
        return 1;
    }
    printf("ready\n");
    fflush(stdout);
    int sig;
    sigwait(&set, &sig);
    actor_stop(&t, 2000);
    actor_stop(&e, 2000);
    bus_destroy(&bus);
    return 0;
}
