/* Unit tests for runtimes/state: every state x event of both machines,
 * legal moves and refusals (with runc's words), names and parsing. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "runtimes/state.h"

/* An expectation: next >= 0 for a legal move, else the exact message. */
typedef struct expect {
    int next;
    const char *msg;
} expect_t;

#define OK(n)                                                                                      \
    {                                                                                              \
        (n), NULL                                                                                  \
    }
#define ERR(msg)                                                                                   \
    {                                                                                              \
        -1, (msg)                                                                                  \
    }

/* The sandbox machine restated independently of runtimes/state.c. */
static const expect_t sb_expect[RT_SB_NSTATES][RT_SB_NEVENTS] = {
    /*             boot, booted, stop, stopped, vm_exited, fail */
    [RT_SB_NEW] = {OK(RT_SB_BOOTING), ERR("sandbox is not booting"), OK(RT_SB_STOPPED),
                   ERR("sandbox is not stopping"), ERR("sandbox has no VM yet"), OK(RT_SB_FAILED)},
    [RT_SB_BOOTING] = {ERR("sandbox is already booting"), OK(RT_SB_READY), OK(RT_SB_STOPPING),
                       ERR("sandbox is not stopping"), OK(RT_SB_FAILED), OK(RT_SB_FAILED)},
    [RT_SB_READY] = {ERR("sandbox is already running"), ERR("sandbox is already running"),
                     OK(RT_SB_STOPPING), ERR("sandbox is not stopping"), OK(RT_SB_STOPPED),
                     OK(RT_SB_FAILED)},
    [RT_SB_STOPPING] = {ERR("sandbox is stopping"), ERR("sandbox is stopping"), OK(RT_SB_STOPPING),
                        OK(RT_SB_STOPPED), OK(RT_SB_STOPPED), OK(RT_SB_FAILED)},
    [RT_SB_STOPPED] = {ERR("sandbox has stopped"), ERR("sandbox has stopped"), OK(RT_SB_STOPPED),
                       OK(RT_SB_STOPPED), OK(RT_SB_STOPPED), OK(RT_SB_FAILED)},
    [RT_SB_FAILED] = {ERR("sandbox has failed"), ERR("sandbox has failed"), OK(RT_SB_STOPPING),
                      OK(RT_SB_STOPPED), OK(RT_SB_FAILED), OK(RT_SB_FAILED)},
};

/* The container machine, for container id "c1". */
static const expect_t ct_expect[RT_CT_NSTATES][RT_CT_NEVENTS] = {
    /* create_done, start, pause, resume, exec, kill, exited, delete, delete_force */
    [RT_CT_CREATING] = {OK(RT_CT_CREATED), ERR("cannot start a container in the creating state"),
                        ERR("container not running"), ERR("container not paused"),
                        ERR("cannot exec in a container that is being created"),
                        ERR("container not running"), OK(RT_CT_STOPPED),
                        ERR("cannot delete container c1 that is not stopped: creating"),
                        OK(RT_CT_STOPPED)},
    [RT_CT_CREATED] = {ERR("container is not being created: created"), OK(RT_CT_RUNNING),
                       ERR("container not running"), ERR("container not paused"), OK(RT_CT_CREATED),
                       OK(RT_CT_CREATED), OK(RT_CT_STOPPED), OK(RT_CT_STOPPED), OK(RT_CT_STOPPED)},
    [RT_CT_RUNNING] = {ERR("container is not being created: running"),
                       ERR("cannot start an already running container"), OK(RT_CT_PAUSED),
                       ERR("container not paused"), OK(RT_CT_RUNNING), OK(RT_CT_RUNNING),
                       OK(RT_CT_STOPPED),
                       ERR("cannot delete container c1 that is not stopped: running"),
                       OK(RT_CT_STOPPED)},
    [RT_CT_PAUSED] = {ERR("container is not being created: paused"),
                      ERR("cannot start a container in the paused state"),
                      ERR("container not running"), OK(RT_CT_RUNNING),
                      ERR("cannot exec in a paused container"), OK(RT_CT_PAUSED), OK(RT_CT_STOPPED),
                      ERR("cannot delete container c1 that is not stopped: paused"),
                      OK(RT_CT_STOPPED)},
    [RT_CT_STOPPED] = {ERR("container is not being created: stopped"),
                       ERR("cannot start a container that has stopped"),
                       ERR("container not running"), ERR("container not paused"),
                       ERR("cannot exec in a stopped container"), ERR("container not running"),
                       OK(RT_CT_STOPPED), OK(RT_CT_STOPPED), OK(RT_CT_STOPPED)},
};

static void test_rt_sandbox_every_transition_matches_table(void **state)
{
    (void)state;
    int legal = 0, illegal = 0;
    for (int s = 0; s < RT_SB_NSTATES; s++)
        for (int e = 0; e < RT_SB_NEVENTS; e++) {
            const expect_t *x = &sb_expect[s][e];
            err_t err = ERR_INIT;
            rt_sandbox_state_t next = RT_SB_NSTATES;
            int r = rt_sandbox_next((rt_sandbox_state_t)s, (rt_sandbox_event_t)e, &next, &err);
            if (x->msg == NULL) {
                if (r != 0 || (int)next != x->next)
                    fail_msg("sandbox %s --%s--> want %s, got r=%d next=%s (%s)",
                             rt_sandbox_state_name(s), rt_sandbox_event_name(e),
                             rt_sandbox_state_name(x->next), r, rt_sandbox_state_name(next),
                             err_str(&err));
                legal++;
            } else {
                if (r != -EINVAL || strcmp(err_str(&err), x->msg) != 0 || next != RT_SB_NSTATES)
                    fail_msg("sandbox %s --%s--> want refusal `%s`, got r=%d `%s`",
                             rt_sandbox_state_name(s), rt_sandbox_event_name(e), x->msg, r,
                             err_str(&err));
                illegal++;
            }
            err_clear(&err);
        }
    assert_int_equal(legal + illegal, RT_SB_NSTATES * RT_SB_NEVENTS);
    assert_true(legal > 0 && illegal > 0);
}

static void test_rt_container_every_transition_matches_table(void **state)
{
    (void)state;
    for (int s = 0; s < RT_CT_NSTATES; s++)
        for (int e = 0; e < RT_CT_NEVENTS; e++) {
            const expect_t *x = &ct_expect[s][e];
            err_t err = ERR_INIT;
            rt_container_state_t next = RT_CT_NSTATES;
            int r = rt_container_next((rt_container_state_t)s, (rt_container_event_t)e, "c1", &next,
                                      &err);
            if (x->msg == NULL) {
                if (r != 0 || (int)next != x->next)
                    fail_msg("container %s --%s--> want %s, got r=%d next=%s (%s)",
                             rt_container_state_name(s), rt_container_event_name(e),
                             rt_container_state_name(x->next), r, rt_container_state_name(next),
                             err_str(&err));
            } else if (r != -EINVAL || strcmp(err_str(&err), x->msg) != 0 ||
                       next != RT_CT_NSTATES) {
                fail_msg("container %s --%s--> want refusal `%s`, got r=%d `%s`",
                         rt_container_state_name(s), rt_container_event_name(e), x->msg, r,
                         err_str(&err));
            }
            err_clear(&err);
        }
}

/* The OCI lifecycle walked end to end, as the runtime will drive it. */
static void test_rt_container_lifecycle_walk(void **state)
{
    (void)state;
    const rt_container_event_t walk[] = {RT_CT_EV_CREATE_DONE, RT_CT_EV_START,  RT_CT_EV_PAUSE,
                                         RT_CT_EV_KILL,        RT_CT_EV_RESUME, RT_CT_EV_EXEC,
                                         RT_CT_EV_EXITED,      RT_CT_EV_DELETE};
    const rt_container_state_t want[] = {RT_CT_CREATED, RT_CT_RUNNING, RT_CT_PAUSED,
                                         RT_CT_PAUSED,  RT_CT_RUNNING, RT_CT_RUNNING,
                                         RT_CT_STOPPED, RT_CT_STOPPED};
    rt_container_state_t s = RT_CT_CREATING;
    for (size_t i = 0; i < sizeof walk / sizeof walk[0]; i++) {
        assert_int_equal(rt_container_next(s, walk[i], "c", &s, NULL), 0);
        assert_int_equal(s, want[i]);
    }
}

static void test_rt_container_null_id_in_message(void **state)
{
    (void)state;
    err_t err = ERR_INIT;
    rt_container_state_t next;
    assert_int_equal(rt_container_next(RT_CT_RUNNING, RT_CT_EV_DELETE, NULL, &next, &err), -EINVAL);
    assert_string_equal(err_str(&err), "cannot delete container  that is not stopped: running");
    err_clear(&err);
    /* A very long id is cut, not overflowed. */
    char id[3000];
    memset(id, 'x', sizeof id - 1);
    id[sizeof id - 1] = '\0';
    assert_int_equal(rt_container_next(RT_CT_PAUSED, RT_CT_EV_DELETE, id, &next, &err), -EINVAL);
    assert_true(strlen(err_str(&err)) < 1024);
    err_clear(&err);
}

static void test_rt_out_of_range_refused(void **state)
{
    (void)state;
    err_t err = ERR_INIT;
    rt_sandbox_state_t sn;
    rt_container_state_t cn;
    assert_int_equal(rt_sandbox_next(RT_SB_NSTATES, RT_SB_EV_BOOT, &sn, &err), -EINVAL);
    err_clear(&err);
    assert_int_equal(rt_sandbox_next(RT_SB_NEW, (rt_sandbox_event_t)-1, &sn, &err), -EINVAL);
    err_clear(&err);
    assert_int_equal(rt_container_next(RT_CT_CREATED, RT_CT_NEVENTS, "c", &cn, &err), -EINVAL);
    err_clear(&err);
    assert_string_equal(rt_sandbox_state_name(RT_SB_NSTATES), "unknown");
    assert_string_equal(rt_sandbox_event_name(RT_SB_NEVENTS), "unknown");
    assert_string_equal(rt_container_state_name((rt_container_state_t)-3), "unknown");
    assert_string_equal(rt_container_event_name(RT_CT_NEVENTS), "unknown");
}

static void test_rt_names_parse_round_trip(void **state)
{
    (void)state;
    err_t err = ERR_INIT;
    for (int i = 0; i < RT_SB_NSTATES; i++) {
        rt_sandbox_state_t s;
        assert_int_equal(rt_sandbox_state_parse(rt_sandbox_state_name(i), &s, &err), 0);
        assert_int_equal(s, i);
    }
    for (int i = 0; i < RT_SB_NEVENTS; i++) {
        rt_sandbox_event_t e;
        assert_int_equal(rt_sandbox_event_parse(rt_sandbox_event_name(i), &e, &err), 0);
        assert_int_equal(e, i);
    }
    for (int i = 0; i < RT_CT_NSTATES; i++) {
        rt_container_state_t s;
        assert_int_equal(rt_container_state_parse(rt_container_state_name(i), &s, &err), 0);
        assert_int_equal(s, i);
    }
    for (int i = 0; i < RT_CT_NEVENTS; i++) {
        rt_container_event_t e;
        assert_int_equal(rt_container_event_parse(rt_container_event_name(i), &e, &err), 0);
        assert_int_equal(e, i);
    }
    assert_string_equal(rt_container_state_name(RT_CT_CREATED), "created");
    assert_string_equal(rt_sandbox_state_name(RT_SB_READY), "ready");
    rt_container_state_t s;
    assert_int_equal(rt_container_state_parse("Running", &s, &err), -EINVAL);
    assert_string_equal(err_str(&err), "unknown container state `Running`");
    err_clear(&err);
    assert_int_equal(rt_container_state_parse(NULL, &s, &err), -EINVAL);
    err_clear(&err);
    rt_sandbox_event_t e;
    assert_int_equal(rt_sandbox_event_parse("explode", &e, &err), -EINVAL);
    err_clear(&err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rt_sandbox_every_transition_matches_table),
        cmocka_unit_test(test_rt_container_every_transition_matches_table),
        cmocka_unit_test(test_rt_container_lifecycle_walk),
        cmocka_unit_test(test_rt_container_null_id_in_message),
        cmocka_unit_test(test_rt_out_of_range_refused),
        cmocka_unit_test(test_rt_names_parse_round_trip),
    };
    return cmocka_run_group_tests_name("rt_state", tests, NULL, NULL);
}
