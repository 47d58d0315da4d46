/* The persist actor through a real bus: records saved, loaded and removed
 * by persist.* messages, writes in order, an injected ENOSPC and the
 * background rewrite after it, and what it refuses. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "actors/client.h"
#include "bus/bus.h"
#include "common/clock.h"
#include "persist/persist_actor.h"
#include "persist/store.h"

#define DEADLINE_MS 10000

struct fx {
    char dir[64], root[96];
    bus_t *bus;
    actor_t *pst;
    bus_client_t *c;
};

static int setup(void **state)
{
    unsetenv("HUSK_PERSIST_FAIL");
    struct fx *f = calloc(1, sizeof *f);
    strcpy(f->dir, "/tmp/husk-test-pst-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->root, sizeof f->root, "%s/root", f->dir);
    char busdir[128];
    snprintf(busdir, sizeof busdir, "%s/bus", f->dir);
    err_t err = ERR_INIT;
    bus_opts_t bo = {.dir = busdir, .supervise_ms = -1};
    assert_int_equal(bus_new(&bo, &f->bus, &err), 0);
    actor_opts_t ao = {.zctx = bus_context(f->bus), .endpoint = bus_endpoint(f->bus)};
    if (persist_actor_start(&ao, f->root, &f->pst, &err) < 0)
        fail_msg("persist actor: %s", err_str(&err));
    assert_int_equal(bus_client_new(bus_ipc_endpoint(f->bus), "test", &f->c, &err), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    bus_client_destroy(&f->c);
    assert_int_equal(actor_stop(&f->pst, 2000), 0);
    bus_destroy(&f->bus);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* Sends m to the persist actor: 0 or the error status; text gets the
 * error's text, *out the reply. */
static int call(struct fx *f, msg_t *m, msg_t **out, char *text)
{
    err_t err = ERR_INIT;
    msg_t *r = NULL;
    int rc = bus_client_call(f->c, PERSIST_ACTOR_NAME, &m, 5000, &r, &err);
    snprintf(text, 1024, "%s", rc < 0 ? err_str(&err) : "");
    err_clear(&err);
    if (out)
        *out = r;
    else
        msg_destroy(&r);
    return rc < 0 ? -rc : 0;
}

static msg_t *sandbox_msg(const char *sb_id, const char *state, char **ids, size_t n)
{
    persist_sandbox_t sb = {.id = (char *)sb_id, .state = (char *)state, .containers = ids,
                            .n_containers = n, .hypervisor = "local"};
    char *text = NULL;
    err_t err = ERR_INIT;
    assert_int_equal(persist_sandbox_to_text(&sb, &text, &err), 0);
    msg_t *m = msg_new(MSG_PERSIST_SAVE_SANDBOX);
    msg_persist_save_sandbox_t *b = m->body;
    msg_set_str(&b->sandbox_id, sb_id);
    free(b->record);
    b->record = text;
    return m;
}

static msg_t *container_msg(const char *sb_id, const char *id, const char *state)
{
    persist_kv_t kv = {"k", "v"};
    persist_container_t c = {.id = (char *)id, .sandbox_id = (char *)sb_id,
                             .bundle = "/b", .state = (char *)state, .annotations = &kv,
                             .n_annotations = 1, .owner_uid = 7};
    char *text = NULL;
    err_t err = ERR_INIT;
    assert_int_equal(persist_container_to_text(&c, &text, &err), 0);
    msg_t *m = msg_new(MSG_PERSIST_SAVE_CONTAINER);
    msg_persist_save_container_t *b = m->body;
    msg_set_str(&b->sandbox_id, sb_id);
    msg_set_str(&b->id, id);
    free(b->record);
    b->record = text;
    return m;
}

static msg_t *load_msg(const char *sb_id)
{
    msg_t *m = msg_new(MSG_PERSIST_LOAD);
    msg_set_str(&((msg_persist_load_t *)m->body)->sandbox_id, sb_id);
    return m;
}

/* The state of a container.json as a reader without a daemon sees it. */
static char *on_disk(struct fx *f, const char *sb_id, const char *id)
{
    persist_store_t *st = NULL;
    persist_container_t *c = NULL;
    assert_int_equal(persist_store_open(f->root, &st, NULL), 0);
    char *s = NULL;
    if (persist_container_load(st, sb_id, id, &c, NULL) == 0)
        s = strdup(c->state);
    persist_container_free(&c);
    persist_store_destroy(&st);
    return s;
}

static void test_persist_actor_save_then_load_round_trips(void **state)
{
    struct fx *f = *state;
    char text[1024];
    char *ids[] = {"c2", "c1"};
    assert_int_equal(call(f, sandbox_msg("sb", "ready", ids, 2), NULL, text), 0);
    msg_t *r = NULL;
    assert_int_equal(call(f, container_msg("sb", "c1", "running"), &r, text), 0);
    msg_persist_saved_t *sv = MSG_BODY(r, PERSIST_SAVED, persist_saved);
    assert_non_null(sv);
    assert_string_equal(sv->sandbox_id, "sb");
    assert_string_equal(sv->id, "c1");
    msg_destroy(&r);
    assert_int_equal(call(f, container_msg("sb", "c2", "created"), NULL, text), 0);

    assert_int_equal(call(f, load_msg("sb"), &r, text), 0);
    msg_persist_loaded_t *lb = MSG_BODY(r, PERSIST_LOADED, persist_loaded);
    assert_non_null(lb);
    err_t err = ERR_INIT;
    persist_sandbox_t *sb = NULL;
    persist_container_t **cs = NULL;
    size_t n = 0;
    assert_int_equal(
        persist_sandbox_from_text("loaded", lb->sandbox, strlen(lb->sandbox), "sb", &sb, &err), 0);
    assert_string_equal(sb->state, "ready");
    assert_string_equal(sb->hypervisor, "local");
    assert_int_equal(persist_containers_from_text("loaded", lb->containers,
                                                  strlen(lb->containers), "sb", &cs, &n, &err),
                     0);
    assert_int_equal(n, 2);
    /* the sandbox's creation order, not the directory's */
    assert_string_equal(cs[0]->id, "c2");
    assert_string_equal(cs[0]->state, "created");
    assert_string_equal(cs[1]->id, "c1");
    assert_string_equal(cs[1]->state, "running");
    assert_int_equal(cs[1]->owner_uid, 7);
    assert_int_equal(cs[1]->n_annotations, 1);
    assert_string_equal(cs[1]->annotations[0].value, "v");
    persist_containers_free(cs, n);
    persist_sandbox_free(&sb);
    msg_destroy(&r);

    /* removal: container, then the whole sandbox */
    msg_t *m = msg_new(MSG_PERSIST_REMOVE_CONTAINER);
    msg_set_str(&((msg_persist_remove_container_t *)m->body)->sandbox_id, "sb");
    msg_set_str(&((msg_persist_remove_container_t *)m->body)->id, "c1");
    assert_int_equal(call(f, m, NULL, text), 0);
    char *s = on_disk(f, "sb", "c1");
    assert_null(s);
    m = msg_new(MSG_PERSIST_REMOVE_SANDBOX);
    msg_set_str(&((msg_persist_remove_sandbox_t *)m->body)->sandbox_id, "sb");
    assert_int_equal(call(f, m, NULL, text), 0);
    char p[160];
    snprintf(p, sizeof p, "%s/sb", f->root);
    struct stat st;
    assert_int_equal(stat(p, &st), -1);
    assert_int_equal(call(f, load_msg("sb"), NULL, text), ENOENT);
    assert_non_null(strstr(text, "sandbox `sb` does not exist"));
}

static void test_persist_actor_writes_in_the_order_sent(void **state)
{
    struct fx *f = *state;
    char text[1024];
    assert_int_equal(call(f, sandbox_msg("sb", "ready", NULL, 0), NULL, text), 0);
    /* many saves of one file sent without waiting: the last one wins */
    static const char *states[] = {"creating", "created", "running", "paused"};
    err_t err = ERR_INIT;
    for (int i = 0; i < 41; i++) {
        msg_t *m = container_msg("sb", "c1", states[i % 4]);
        assert_int_equal(bus_client_send(f->c, PERSIST_ACTOR_NAME, &m, &err), 0);
    }
    /* a remove takes away what a save sent before it wrote */
    msg_t *m = msg_new(MSG_PERSIST_REMOVE_CONTAINER);
    msg_set_str(&((msg_persist_remove_container_t *)m->body)->sandbox_id, "sb");
    msg_set_str(&((msg_persist_remove_container_t *)m->body)->id, "c2");
    msg_t *s2 = container_msg("sb", "c2", "running");
    assert_int_equal(bus_client_send(f->c, PERSIST_ACTOR_NAME, &s2, &err), 0);
    assert_int_equal(bus_client_send(f->c, PERSIST_ACTOR_NAME, &m, &err), 0);
    /* answered after everything sent before it */
    assert_int_equal(call(f, container_msg("sb", "c3", "stopped"), NULL, text), 0);
    char *s = on_disk(f, "sb", "c1");
    assert_non_null(s);
    assert_string_equal(s, "creating"); /* states[40 % 4], the last sent */
    free(s);
    s = on_disk(f, "sb", "c2");
    assert_null(s);
    s = on_disk(f, "sb", "c3");
    assert_string_equal(s, "stopped");
    free(s);
}

static void test_persist_actor_enospc_fails_then_the_record_is_rewritten(void **state)
{
    struct fx *f = *state;
    char text[1024];
    assert_int_equal(call(f, sandbox_msg("sb", "ready", NULL, 0), NULL, text), 0);
    assert_int_equal(call(f, container_msg("sb", "c1", "created"), NULL, text), 0);
    /* the broker's fault rule: the next 5 writes fail (3 at once, 2 in the
     * background), starting with the save it triggers on */
    msg_t *fs = msg_new(MSG_BUS_FAULT_SET), *r = NULL;
    msg_set_str(&((msg_bus_fault_set_t *)fs->body)->rules,
                "enospc:5 type=persist.save_container");
    err_t err = ERR_INIT;
    assert_int_equal(bus_client_call(f->c, "bus", &fs, 2000, &r, &err), 0);
    msg_destroy(&r);
    assert_int_equal(call(f, container_msg("sb", "c1", "running"), NULL, text), ENOSPC);
    assert_non_null(strstr(text, "No space left on device"));
    assert_non_null(strstr(text, "save container `c1`"));
    msg_t *fc = msg_new(MSG_BUS_FAULT_CLEAR);
    assert_int_equal(bus_client_call(f->c, "bus", &fc, 2000, &r, &err), 0);
    msg_destroy(&r);
    char *s = on_disk(f, "sb", "c1");
    assert_string_equal(s, "created"); /* the old file is intact */
    free(s);
    /* the persist actor rewrites the newest record once the disk takes it */
    int64_t dl = clock_mono_ms() + DEADLINE_MS;
    for (;;) {
        s = on_disk(f, "sb", "c1");
        bool done = s && !strcmp(s, "running");
        free(s);
        if (done)
            break;
        assert_true(clock_mono_ms() < dl);
        usleep(20 * 1000);
    }
    /* and the next save goes through at once */
    assert_int_equal(call(f, container_msg("sb", "c1", "stopped"), NULL, text), 0);
    s = on_disk(f, "sb", "c1");
    assert_string_equal(s, "stopped");
    free(s);
}

static void test_persist_actor_corrupt_file_on_load_is_reported(void **state)
{
    struct fx *f = *state;
    char text[1024];
    assert_int_equal(call(f, sandbox_msg("sb", "ready", NULL, 0), NULL, text), 0);
    assert_int_equal(call(f, container_msg("sb", "c1", "running"), NULL, text), 0);
    char p[200];
    snprintf(p, sizeof p, "%s/sb/c1/container.json", f->root);
    FILE *fp = fopen(p, "w");
    assert_non_null(fp);
    fputs("{\"schema\": 1, \"id\": \"c1\", \"sandbox_id\": \"sb\", \"state\": 42}", fp);
    fclose(fp);
    assert_int_equal(call(f, load_msg("sb"), NULL, text), EBADMSG);
    assert_non_null(strstr(text, p));
    assert_non_null(strstr(text, "field `state`"));
}

static void test_persist_actor_bad_requests_are_refused(void **state)
{
    struct fx *f = *state;
    char text[1024];
    assert_int_equal(call(f, sandbox_msg("sb", "ready", NULL, 0), NULL, text), 0);
    /* a record of another container than the one named */
    msg_t *m = container_msg("sb", "c1", "running");
    msg_set_str(&((msg_persist_save_container_t *)m->body)->id, "c9");
    assert_int_equal(call(f, m, NULL, text), EBADMSG);
    assert_non_null(strstr(text, "persist.save_container from test"));
    assert_non_null(strstr(text, "field `id`"));
    /* a record that is no state document */
    m = msg_new(MSG_PERSIST_SAVE_CONTAINER);
    msg_persist_save_container_t *b = m->body;
    msg_set_str(&b->sandbox_id, "sb");
    msg_set_str(&b->id, "c1");
    msg_set_str(&b->record, "[1, 2]");
    assert_int_equal(call(f, m, NULL, text), EBADMSG);
    assert_non_null(strstr(text, "expected a JSON object"));
    /* a record without the schema */
    m = msg_new(MSG_PERSIST_SAVE_SANDBOX);
    msg_set_str(&((msg_persist_save_sandbox_t *)m->body)->sandbox_id, "sb");
    msg_set_str(&((msg_persist_save_sandbox_t *)m->body)->record, "{\"id\":\"sb\",\"state\":\"x\"}");
    assert_int_equal(call(f, m, NULL, text), EBADMSG);
    assert_non_null(strstr(text, "field `schema`: missing"));
    /* an id that would leave the root */
    m = msg_new(MSG_PERSIST_REMOVE_SANDBOX);
    msg_set_str(&((msg_persist_remove_sandbox_t *)m->body)->sandbox_id, "..");
    assert_int_equal(call(f, m, NULL, text), EINVAL);
    /* fault injection is the broker's */
    m = msg_new(MSG_FAULT_INJECT);
    msg_set_str(&((msg_fault_inject_t *)m->body)->action, "enospc");
    assert_int_equal(call(f, m, NULL, text), EPERM);
    /* nothing of it reached the disk */
    char *s = on_disk(f, "sb", "c1");
    assert_null(s);
    s = on_disk(f, "sb", "c9");
    assert_null(s);
}

static void test_persist_actor_remove_of_a_missing_container_is_ok(void **state)
{
    struct fx *f = *state;
    char text[1024];
    assert_int_equal(call(f, sandbox_msg("sb", "ready", NULL, 0), NULL, text), 0);
    msg_t *m = msg_new(MSG_PERSIST_REMOVE_CONTAINER), *r = NULL;
    msg_set_str(&((msg_persist_remove_container_t *)m->body)->sandbox_id, "sb");
    msg_set_str(&((msg_persist_remove_container_t *)m->body)->id, "nope");
    assert_int_equal(call(f, m, &r, text), 0);
    assert_non_null(MSG_BODY(r, PERSIST_SAVED, persist_saved));
    msg_destroy(&r);
    m = msg_new(MSG_PERSIST_REMOVE_SANDBOX);
    msg_set_str(&((msg_persist_remove_sandbox_t *)m->body)->sandbox_id, "none");
    assert_int_equal(call(f, m, NULL, text), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_persist_actor_save_then_load_round_trips, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_persist_actor_writes_in_the_order_sent, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_persist_actor_enospc_fails_then_the_record_is_rewritten, setup, teardown),
        cmocka_unit_test_setup_teardown(test_persist_actor_corrupt_file_on_load_is_reported,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_persist_actor_bad_requests_are_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_persist_actor_remove_of_a_missing_container_is_ok,
                                        setup, teardown),
    };
    return cmocka_run_group_tests_name("persist_actor", tests, NULL, NULL);
}
