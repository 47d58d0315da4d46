/* Unit tests for persist/store: round trips, atomicity (a crash between
 * write and rename), corrupt files reported with the file and field, pid
 * reuse detection, concurrent lockers, ENOSPC/EIO injection. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <dirent.h>
#include <unistd.h>

#include <cmocka.h>

#include "persist/store.h"

static char root[256];

static void rm_rf(const char *path)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (system(cmd) != 0)
        fprintf(stderr, "cleanup of %s failed\n", path);
}

static int setup(void **state)
{
    snprintf(root, sizeof root, "/tmp/husk-test-persist.XXXXXX");
    if (!mkdtemp(root))
        return -1;
    unsetenv("HUSK_PERSIST_FAIL");
    persist_store_t *s = NULL;
    err_t err = ERR_INIT;
    if (persist_store_open(root, &s, &err) < 0) {
        fprintf(stderr, "%s\n", err_str(&err));
        return -1;
    }
    *state = s;
    return 0;
}

static int teardown(void **state)
{
    persist_store_t *s = *state;
    persist_store_destroy(&s);
    rm_rf(root);
    return 0;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char *buf = calloc(1, 65536);
    size_t n = fread(buf, 1, 65535, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static int count_temps(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, ".tmp."))
            n++;
    if (d)
        closedir(d);
    return n;
}

static persist_sandbox_t *make_sandbox(const char *id)
{
    persist_sandbox_t *sb = calloc(1, sizeof *sb);
    sb->id = strdup(id);
    sb->state = strdup("ready");
    sb->bundle = strdup("/var/lib/b/p1");
    sb->created = persist_time_now();
    sb->daemon_pid = getpid();
    persist_proc_start_time(getpid(), &sb->daemon_start, NULL);
    sb->vmm_pid = 4242;
    sb->vmm_start = 123456;
    sb->hypervisor = strdup("qemu");
    sb->agent_socket = strdup("/run/husk/p1/agent.sock");
    sb->netns = strdup("/var/run/netns/cni-1");
    sb->n_annotations = 2;
    sb->annotations = calloc(2, sizeof *sb->annotations);
    sb->annotations[0].key = strdup("io.kubernetes.cri.container-type");
    sb->annotations[0].value = strdup("sandbox");
    sb->annotations[1].key = strdup("k");
    sb->annotations[1].value = strdup("v \"quoted\" é");
    sb->n_net_taps = sb->n_net_tap_states = 1;
    sb->net_taps = calloc(1, sizeof *sb->net_taps);
    sb->net_taps[0].key = strdup("tap0_husk");
    sb->net_taps[0].value = strdup("0a:58:0a:58:00:02");
    sb->net_tap_states = calloc(1, sizeof *sb->net_tap_states);
    sb->net_tap_states[0].key = strdup("tap0_husk");
    sb->net_tap_states[0].value = strdup("qdisc=1,txqlen=0");
    sb->n_containers = 2;
    sb->containers = calloc(3, sizeof(char *));
    sb->containers[0] = strdup(id);
    sb->containers[1] = strdup("c2");
    return sb;
}

static persist_container_t *make_container(const char *sid, const char *cid)
{
    persist_container_t *c = calloc(1, sizeof *c);
    c->id = strdup(cid);
    c->sandbox_id = strdup(sid);
    c->bundle = strdup("/b/c");
    c->rootfs = strdup("/b/c/rootfs");
    c->state = strdup("running");
    c->created = persist_time_now();
    c->init_pid = 777;
    c->init_start = 999;
    c->exited = true;
    c->exit_status = 137;
    c->exited_at = strdup("2024-05-01T10:11:12.5+02:00");
    c->n_annotations = 1;
    c->annotations = calloc(1, sizeof *c->annotations);
    c->annotations[0].key = strdup("a");
    c->annotations[0].value = strdup("b");
    c->owner_uid = 1000;
    c->pid_file = strdup("/tmp/pid");
    c->console = true;
    return c;
}

/* ---- round trips ----------------------------------------------------------- */

static void test_persist_sandbox_round_trip_keeps_every_field(void **state)
{
    persist_store_t *s = *state;
    err_t err = ERR_INIT;
    persist_sandbox_t *sb = make_sandbox("p1"), *back = NULL;
    assert_int_equal(persist_sandbox_save(s, sb, &err), 0);
    assert_int_equal(persist_sandbox_load(s, "p1", &back, &err), 0);
    assert_string_equal(back->id, "p1");
    assert_string_equal(back->state, "ready");
    assert_string_equal(back->bundle, sb->bundle);
    assert_string_equal(back->created, sb->created);
    assert_int_equal(back->daemon_pid, getpid());
    assert_int_equal(back->daemon_start, sb->daemon_start);
    assert_int_equal(back->vmm_pid, 4242);
    assert_int_equal(back->vmm_start, 123456);
    assert_string_equal(back->hypervisor, "qemu");
    assert_string_equal(back->agent_socket, sb->agent_socket);
    assert_string_equal(back->netns, sb->netns);
    assert_int_equal(back->n_annotations, 2);
    assert_string_equal(back->annotations[1].key, "k");
    assert_string_equal(back->annotations[1].value, "v \"quoted\" é");
    assert_int_equal(back->n_containers, 2);
    assert_string_equal(back->containers[1], "c2");
    assert_null(back->containers[2]);
    assert_int_equal(back->n_net_taps, 1);
    assert_string_equal(back->net_taps[0].key, "tap0_husk");
    assert_string_equal(back->net_taps[0].value, "0a:58:0a:58:00:02");
    assert_int_equal(back->n_net_tap_states, 1);
    assert_string_equal(back->net_tap_states[0].value, "qdisc=1,txqlen=0");

    char path[512];
    struct stat st;
    snprintf(path, sizeof path, "%s/p1", root);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0700);
    snprintf(path, sizeof path, "%s/p1/sandbox.json", root);
    char *text = read_file(path);
    assert_non_null(strstr(text, "\"schema\": 1"));
    free(text);
    assert_int_equal(count_temps(path), 0);
    persist_sandbox_free(&sb);
    persist_sandbox_free(&back);
    assert_null(back);
}

static void test_persist_sandbox_minimal_fields_default(void **state)
{
    persist_store_t *s = *state;
    err_t err = ERR_INIT;
    persist_sandbox_t sb = {.id = "m", .state = "new"}, *back = NULL;
    assert_int_equal(persist_sandbox_save(s, &sb, &err), 0);
    assert_int_equal(persist_sandbox_load(s, "m", &back, &err), 0);
    assert_null(back->bundle);
    assert_int_equal(back->daemon_pid, 0);
    assert_int_equal(back->n_containers, 0);
    assert_non_null(back->containers);
    persist_sandbox_free(&back);
}

static void test_persist_container_round_trip_keeps_every_field(void **state)
{
    persist_store_t *s = *state;
    err_t err = ERR_INIT;
    persist_sandbox_t *sb = make_sandbox("p1");
    persist_container_t *c = make_container("p1", "c2"), *back = NULL;
    assert_int_equal(persist_sandbox_save(s, sb, &err), 0);
    assert_int_equal(persist_container_save(s, c, &err), 0);
    assert_int_equal(persist_container_load(s, "p1", "c2", &back, &err), 0);
    assert_string_equal(back->id, "c2");
    assert_string_equal(back->sandbox_id, "p1");
    assert_string_equal(back->bundle, "/b/c");
    assert_string_equal(back->rootfs, "/b/c/rootfs");
    assert_string_equal(back->state, "running");
    assert_string_equal(back->created, c->created);
    assert_int_equal(back->init_pid, 777);
    assert_int_equal(back->init_start, 999);
    assert_true(back->exited);
    assert_int_equal(back->exit_status, 137);
    assert_string_equal(back->exited_at, c->exited_at);
    assert_string_equal(back->annotations[0].value, "b");
    assert_int_equal(back->owner_uid, 1000);
    assert_string_equal(back->pid_file, "/tmp/pid");
    assert_true(back->console);
    persist_container_free(&back);
    persist_container_free(&c);
    persist_sandbox_free(&sb);
}

static void test_persist_container_without_sandbox_fails(void **state)
{
    persist_store_t *s = *state;
    err_t err = ERR_INIT;
    persist_container_t *c = make_container("nosb", "c1");
    assert_int_equal(persist_container_save(s, c, &err), -ENOENT);
    assert_non_null(strstr(err_str(&err), "sandbox `nosb` does not exist"));
    err_clear(&err);
    persist_container_free(&c);
}

static void test_persist_list_find_remove(void **state)
{
    persist_store_t *s = *state;
    err_t err = ERR_INIT;
    persist_sandbox_t *a = make_sandbox("sb-b"), *b = make_sandbox("sb-a");
    assert_int_equal(persist_sandbox_save(s, a, &err), 0);
    assert_int_equal(persist_sandbox_save(s, b, &err), 0);
    persist_container_t *c1 = make_container("sb-b", "web"), *c2 = make_container("sb-b", "db");
    assert_int_equal(persist_container_save(s, c1, &err), 0);
    assert_int_equal(persist_container_save(s, c2, &err), 0);
    /* A half-created directory without sandbox.json is not listed. */
    char path[512];
    snprintf(path, sizeof path, "%s/half", root);
    mkdir(path, 0700);

    char **ids = NULL;
    size_t n = 0;
    assert_int_equal(persist_sandbox_list(s, &ids, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(ids[0], "sb-a");
    assert_string_equal(ids[1], "sb-b");
    persist_strv_free(ids);
    assert_int_equal(persist_container_list(s, "sb-b", &ids, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(ids[0], "db");
    assert_string_equal(ids[1], "web");
    persist_strv_free(ids);

    char *sid = NULL;
    assert_int_equal(persist_find_sandbox(s, "web", &sid, &err), 0);
    assert_string_equal(sid, "sb-b");
    free(sid);
    assert_int_equal(persist_find_sandbox(s, "sb-a", &sid, &err), 0); /* its own sandbox */
    assert_string_equal(sid, "sb-a");
    free(sid);
    assert_int_equal(persist_find_sandbox(s, "nope", &sid, &err), -ENOENT);
    assert_non_null(strstr(err_str(&err), "container does not exist"));
    err_clear(&err);

    assert_int_equal(persist_container_remove(s, "sb-b", "web", &err), 0);
    assert_int_equal(persist_container_remove(s, "sb-b", "web", &err), 0); /* idempotent */
    persist_container_t *gone = NULL;
    assert_int_equal(persist_container_load(s, "sb-b", "web", &gone, &err), -ENOENT);
    err_clear(&err);

    /* Foreign files (sockets, logs) go with the sandbox directory. */
    snprintf(path, sizeof path, "%s/sb-b/console.log", root);
    write_file(path, "log");
    assert_int_equal(persist_sandbox_remove(s, "sb-b", &err), 0);
    snprintf(path, sizeof path, "%s/sb-b", root);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(persist_sandbox_remove(s, "sb-b", &err), 0);
    persist_sandbox_t *x = NULL;
    assert_int_equal(persist_sandbox_load(s, "sb-b", &x, &err), -ENOENT);
    assert_non_null(strstr(err_str(&err), "sandbox `sb-b` does not exist"));
    err_clear(&err);
    persist_container_free(&c1);
    persist_container_free(&c2);
    persist_sandbox_free(&a);
    persist_sandbox_free(&b);
}

static void test_persist_invalid_ids_refused(void **state)
{
    persist_store_t *s = *state;
    err_t err = ERR_INIT;
    const char *bad[] = {"", ".", "..", "../x", "a/b", ".hidden", "sp ace", NULL};
    for (size_t i = 0; bad[i]; i++) {
        persist_sandbox_t sb = {.id = (char *)bad[i], .state = "new"};
        assert_int_equal(persist_sandbox_save(s, &sb, &err), -EINVAL);
        err_clear(&err);
        persist_sandbox_t *out = NULL;
        assert_int_equal(persist_sandbox_load(s, bad[i], &out, &err), -EINVAL);
        err_clear(&err);
    }
    assert_true(persist_id_valid("a-b_c+d.e9"));
    persist_sandbox_t sb = {.id = "p", .state = "new"};
    assert_int_equal(persist_sandbox_save(s, &sb, &err), 0);
    persist_container_t c = {.id = "shared", .sandbox_id = "p", .state = "created"};
    assert_int_equal(persist_container_save(s, &c, &err), -EINVAL);
    assert_non_null(strstr(err_str(&err), "reserved"));
    err_clear(&err);
    persist_sandbox_t nostate = {.id = "q"};
    assert_int_equal(persist_sandbox_save(s, &nostate, &err), -EINVAL);
    err_clear(&err);
    persist_sandbox_t badutf = {.id = "q", .state = "new", .bundle = "\xff\xfe"};
    assert_int_equal(persist_sandbox_save(s, &badutf, &err), -EINVAL);
    assert_non_null(strstr(err_str(&err), "field `bundle`"));
    err_clear(&err);
}

/* ---- atomicity and faults ------------------------------------------------- */

static void test_persist_crash_before_rename_keeps_old_state(void **state)
{
    persist_store_t *s = *state;
    err_t err = ERR_INIT;
    persist_sandbox_t sb = {.id = "p1", .state = "booting"}, *back = NULL;
    assert_int_equal(persist_sandbox_save(s, &sb, &err), 0);

    persist_store_set_fault(s, PERSIST_FAULT_CRASH, 1);
    sb.state = "ready";
    assert_int_equal(persist_sandbox_save(s, &sb, &err), -EIO);
    assert_non_null(strstr(err_str(&err), "injected crash"));
    err_clear(&err);

    char dir[512];
    snprintf(dir, sizeof dir, "%s/p1", root);
    assert_int_equal(count_temps(dir), 1); /* the stray temp a crash leaves */
    assert_int_equal(persist_sandbox_load(s, "p1", &back, &err), 0);
    assert_string_equal(back->state, "booting"); /* old state, intact */
    persist_sandbox_free(&back);
    char **ids = NULL;
    size_t n = 0;
    assert_int_equal(persist_sandbox_list(s, &ids, &n, &err), 0);
    assert_int_equal(n, 1);
    persist_strv_free(ids);

    /* The next save cleans it and lands. */
    assert_int_equal(persist_sandbox_save(s, &sb, &err), 0);
    assert_int_equal(count_temps(dir), 0);
    assert_int_equal(persist_sandbox_load(s, "p1", &back, &err), 0);
    assert_string_equal(back->state, "ready");
    persist_sandbox_free(&back);
}

static void test_persist_stray_temp_of_live_writer_is_kept(void **state)
{
    persist_store_t *s = *state;
    err_t err = ERR_INIT;
    persist_sandbox_t sb = {.id = "p1", .state = "new"};
    assert_int_equal(persist_sandbox_save(s, &sb, &err), 0);
    char dead[600], live[600], dir[300];
    snprintf(dir, sizeof dir, "%s/p1", root);
    /* pid 1 is alive: its temp may be a save in progress. */
    snprintf(live, sizeof live, "%s/.sandbox.json.tmp.1.abcdef", dir);
    snprintf(dead, sizeof dead, "%s/.sandbox.json.tmp.2147483646.abcdef", dir);
    write_file(live, "{\"schema\":1,");
    write_file(dead, "{\"sch");
    assert_int_equal(persist_sandbox_save(s, &sb, &err), 0);
    assert_int_equal(access(live, F_OK), 0);
    assert_int_equal(access(dead, F_OK), -1);
    unlink(live);
}

static void test_persist_enospc_injection_fails_and_keeps_old(void **state)
{
    persist_store_t *s = *state;
    err_t err = ERR_INIT;
    persist_sandbox_t sb = {.id = "p1", .state = "new"}, *back = NULL;
    assert_int_equal(persist_sandbox_save(s, &sb, &err), 0);
    persist_container_t c = {.id = "c1", .sandbox_id = "p1", .state = "created"};
    assert_int_equal(persist_container_save(s, &c, &err), 0);

    persist_store_set_fault(s, ENOSPC, 2);
    sb.state = "ready";
    assert_int_equal(persist_sandbox_save(s, &sb, &err), -ENOSPC);
    assert_non_null(strstr(err_str(&err), "No space left on device"));
    assert_non_null(strstr(err_str(&err), "save sandbox `p1`"));
    err_clear(&err);
    c.state = "running";
    assert_int_equal(persist_container_save(s, &c, &err), -ENOSPC);
    err_clear(&err);
    char dir[512];
    snprintf(dir, sizeof dir, "%s/p1", root);
    assert_int_equal(count_temps(dir), 0); /* failed writes leave no temp */
    assert_int_equal(persist_sandbox_load(s, "p1", &back, &err), 0);
    assert_string_equal(back->state, "new");
    persist_sandbox_free(&back);
    persist_container_t *cb = NULL;
    assert_int_equal(persist_container_load(s, "p1", "c1", &cb, &err), 0);
    assert_string_equal(cb->state, "created");
    persist_container_free(&cb);
    /* Count exhausted: writes work again. */
    assert_int_equal(persist_sandbox_save(s, &sb, &err), 0);
}

static void test_persist_env_fault_eio(void **state)
{
    (void)state;
    err_t err = ERR_INIT;
    persist_store_t *s = NULL;
    setenv("HUSK_PERSIST_FAIL", "eio:1", 1);
    assert_int_equal(persist_store_open(root, &s, &err), 0);
    unsetenv("HUSK_PERSIST_FAIL");
    persist_sandbox_t sb = {.id = "e1", .state = "new"};
    assert_int_equal(persist_sandbox_save(s, &sb, &err), -EIO);
    err_clear(&err);
    assert_int_equal(persist_sandbox_save(s, &sb, &err), 0);
    persist_store_destroy(&s);

    setenv("HUSK_PERSIST_FAIL", "bogus", 1);
    assert_int_equal(persist_store_open(root, &s, &err), -EINVAL);
    assert_non_null(strstr(err_str(&err), "HUSK_PERSIST_FAIL"));
    err_clear(&err);
    unsetenv("HUSK_PERSIST_FAIL");
    assert_null(s);
}

/* ---- corrupt files ---------------------------------------------------------- */

static void expect_corrupt(persist_store_t *s, const char *text, int code, const char *needle)
{
    err_t err = ERR_INIT;
    char path[512];
    snprintf(path, sizeof path, "%s/bad", root);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/bad/sandbox.json", root);
    write_file(path, text);
    persist_sandbox_t *sb = NULL;
    int r = persist_sandbox_load(s, "bad", &sb, &err);
    if (r != code || !strstr(err_str(&err), needle) || !strstr(err_str(&err), path))
        fail_msg("for %s: got %d `%s`, want %d with `%s`", text, r, err_str(&err), code, needle);
    assert_null(sb);
    err_clear(&err);
}

static void test_persist_corrupt_sandbox_reported_with_file_and_field(void **state)
{
    persist_store_t *s = *state;
    expect_corrupt(s, "{\"schema\":1,\"id\":\"bad\",\"sta", -EBADMSG, "invalid JSON");
    expect_corrupt(s, "", -EBADMSG, "empty file");
    expect_corrupt(s, "[1,2]", -EBADMSG, "expected a JSON object");
    expect_corrupt(s, "{\"id\":\"bad\",\"state\":\"new\"}", -EBADMSG, "field `schema`: missing");
    expect_corrupt(s, "{\"schema\":\"1\",\"id\":\"bad\",\"state\":\"new\"}", -EBADMSG,
                   "field `schema`: expected integer");
    expect_corrupt(s, "{\"schema\":2,\"id\":\"bad\",\"state\":\"new\"}", -EPROTONOSUPPORT,
                   "schema 2 is newer");
    expect_corrupt(s, "{\"schema\":1,\"state\":\"new\"}", -EBADMSG, "field `id`: missing");
    expect_corrupt(s, "{\"schema\":1,\"id\":\"other\",\"state\":\"new\"}", -EBADMSG,
                   "does not match its directory");
    expect_corrupt(s, "{\"schema\":1,\"id\":\"bad\"}", -EBADMSG, "field `state`: missing");
    expect_corrupt(s, "{\"schema\":1,\"id\":\"bad\",\"state\":7}", -EBADMSG,
                   "field `state`: expected string");
    expect_corrupt(s, "{\"schema\":1,\"id\":\"bad\",\"state\":\"new\",\"daemon_pid\":\"12\"}",
                   -EBADMSG, "field `daemon_pid`: expected integer");
    expect_corrupt(s, "{\"schema\":1,\"id\":\"bad\",\"state\":\"new\",\"daemon_pid\":-5}", -EBADMSG,
                   "field `daemon_pid`: out of range");
    expect_corrupt(s, "{\"schema\":1,\"id\":\"bad\",\"state\":\"new\",\"annotations\":[]}",
                   -EBADMSG, "field `annotations`: expected object");
    expect_corrupt(s, "{\"schema\":1,\"id\":\"bad\",\"state\":\"new\",\"annotations\":{\"a\":1}}",
                   -EBADMSG, "value of `a`: expected string");
    expect_corrupt(s, "{\"schema\":1,\"id\":\"bad\",\"state\":\"new\",\"containers\":[\"../x\"]}",
                   -EBADMSG, "field `containers`: item 0");
    expect_corrupt(s, "{\"schema\":1,\"id\":\"bad\",\"state\":\"new\",\"created\":\"yesterday\"}",
                   -EBADMSG, "field `created`: expected an RFC 3339 time");
    expect_corrupt(s, "{\"schema\":1,\"schema\":1,\"id\":\"bad\",\"state\":\"new\"}", -EBADMSG,
                   "duplicate");
    expect_corrupt(s, "{\"schema\":1,\"id\":\"bad\",\"state\":\"new\",\"bundle\":\"a\\u0000b\"}",
                   -EBADMSG, "NUL");
}

static void test_persist_corrupt_container_reported(void **state)
{
    persist_store_t *s = *state;
    err_t err = ERR_INIT;
    persist_sandbox_t sb = {.id = "p1", .state = "ready"};
    assert_int_equal(persist_sandbox_save(s, &sb, &err), 0);
    char path[512];
    snprintf(path, sizeof path, "%s/p1/c1", root);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/p1/c1/container.json", root);
    const struct {
        const char *text, *needle;
    } cases[] = {
        {"{\"schema\":1,\"id\":\"c1\",\"sandbox_id\":\"p2\",\"state\":\"created\"}",
         "field `sandbox_id`"},
        {"{\"schema\":1,\"id\":\"c1\",\"sandbox_id\":\"p1\",\"state\":\"created\",\"exited\":1}",
         "field `exited`: expected boolean"},
        {"{\"schema\":1,\"id\":\"c1\",\"sandbox_id\":\"p1\",\"state\":\"stopped\",\"exited\":true}",
         "field `exit_status`: missing"},
        {"{\"schema\":1,\"id\":\"c1\",\"sandbox_id\":\"p1\",\"state\":\"created\","
         "\"owner_uid\":4294967296}",
         "field `owner_uid`: out of range"},
        {"{\"schema\":1,\"id\":\"c1\",\"sandbox_id\":\"p1\",\"state\":\"created\","
         "\"console\":\"yes\"}",
         "field `console`: expected boolean"},
        {"{\"schema\":1,\"id\":\"c1\",\"sandbox_id\":\"p1\",\"state\":[]}",
         "field `state`: expected string"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_file(path, cases[i].text);
        persist_container_t *c = NULL;
        int r = persist_container_load(s, "p1", "c1", &c, &err);
        if (r != -EBADMSG || !strstr(err_str(&err), cases[i].needle) ||
            !strstr(err_str(&err), path))
            fail_msg("case %zu: got %d `%s`", i, r, err_str(&err));
        err_clear(&err);
    }
    /* A symlink is not followed. */
    unlink(path);
    assert_int_equal(symlink("/etc/passwd", path), 0);
    persist_container_t *c = NULL;
    assert_true(persist_container_load(s, "p1", "c1", &c, &err) < 0);
    err_clear(&err);
}

/* ---- processes ------------------------------------------------------------------ */

static void test_persist_pid_reuse_detected_by_start_time(void **state)
{
    (void)state;
    err_t err = ERR_INIT;
    uint64_t self = 0;
    assert_int_equal(persist_proc_start_time(getpid(), &self, &err), 0);
    assert_true(self > 0);
    assert_true(persist_pid_alive(getpid(), self));
    assert_true(persist_pid_alive(getpid(), 0));
    assert_false(persist_pid_alive(getpid(), self + 1)); /* same pid, another process */

    pid_t child = fork();
    if (child == 0) {
        pause();
        _exit(0);
    }
    uint64_t cst = 0;
    assert_int_equal(persist_proc_start_time(child, &cst, &err), 0);
    persist_sandbox_t sb = {.daemon_pid = child, .daemon_start = cst};
    assert_true(persist_daemon_alive(&sb));
    kill(child, SIGKILL);
    /* A zombie is not alive. */
    for (int i = 0; i < 1000 && persist_pid_alive(child, cst); i++)
        usleep(1000);
    assert_false(persist_daemon_alive(&sb));
    waitpid(child, NULL, 0);
    assert_false(persist_daemon_alive(&sb));
    assert_int_equal(persist_proc_start_time(child, &cst, &err), -ESRCH);
    err_clear(&err);
    persist_sandbox_t none = {0};
    assert_false(persist_daemon_alive(&none));
    assert_false(persist_daemon_alive(NULL));
}

static void test_persist_time_now_is_rfc3339nano(void **state)
{
    (void)state;
    char *t = persist_time_now();
    assert_int_equal(strlen(t), 30);
    assert_int_equal(t[10], 'T');
    assert_int_equal(t[19], '.');
    assert_int_equal(t[29], 'Z');
    free(t);
}

/* ---- locking ------------------------------------------------------------------- */

static void test_persist_lock_excludes_other_process(void **state)
{
    persist_store_t *s = *state;
    err_t err = ERR_INIT;
    int ready[2], go[2];
    assert_int_equal(pipe(ready), 0);
    assert_int_equal(pipe(go), 0);
    pid_t child = fork();
    if (child == 0) {
        persist_lock_t *l = NULL;
        err_t e = ERR_INIT;
        if (persist_lock_sandbox(s, "lk", PERSIST_LOCK_CREATE, 1000, &l, &e) < 0)
            _exit(1);
        char b = 'x';
        if (write(ready[1], &b, 1) != 1 || read(go[0], &b, 1) != 1)
            _exit(2);
        persist_unlock(&l);
        _exit(0);
    }
    char b;
    assert_int_equal(read(ready[0], &b, 1), 1);
    persist_lock_t *l = NULL;
    assert_int_equal(persist_lock_sandbox(s, "lk", 0, 100, &l, &err), -ETIMEDOUT);
    assert_non_null(strstr(err_str(&err), "still held by another husk"));
    err_clear(&err);
    assert_int_equal(persist_lock_sandbox(s, "lk", PERSIST_LOCK_SHARED, 0, &l, &err), -ETIMEDOUT);
    err_clear(&err);
    assert_int_equal(write(go[1], "g", 1), 1);
    /* Waiting works: the holder lets go while we wait. */
    assert_int_equal(persist_lock_sandbox(s, "lk", 0, 5000, &l, &err), 0);
    int st;
    waitpid(child, &st, 0);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    persist_unlock(&l);
    assert_null(l);
    persist_unlock(&l);

    /* Shared lockers coexist. */
    persist_lock_t *a = NULL, *bb = NULL;
    assert_int_equal(persist_lock_sandbox(s, "lk", PERSIST_LOCK_SHARED, 0, &a, &err), 0);
    assert_int_equal(persist_lock_sandbox(s, "lk", PERSIST_LOCK_SHARED, 0, &bb, &err), 0);
    persist_unlock(&a);
    persist_unlock(&bb);
    close(ready[0]);
    close(ready[1]);
    close(go[0]);
    close(go[1]);
}

static void test_persist_lock_missing_sandbox(void **state)
{
    persist_store_t *s = *state;
    err_t err = ERR_INIT;
    persist_lock_t *l = NULL;
    assert_int_equal(persist_lock_sandbox(s, "ghost", 0, 0, &l, &err), -ENOENT);
    assert_non_null(strstr(err_str(&err), "sandbox `ghost` does not exist"));
    err_clear(&err);
    char path[512];
    snprintf(path, sizeof path, "%s/ghost", root);
    assert_int_equal(access(path, F_OK), -1);
}

static void test_persist_lock_follows_removed_sandbox(void **state)
{
    persist_store_t *s = *state;
    err_t err = ERR_INIT;
    persist_sandbox_t sb = {.id = "rm", .state = "ready"};
    assert_int_equal(persist_sandbox_save(s, &sb, &err), 0);
    int ready[2];
    assert_int_equal(pipe(ready), 0);
    pid_t child = fork();
    if (child == 0) {
        /* Holds the lock, removes the sandbox, then releases. */
        persist_lock_t *l = NULL;
        err_t e = ERR_INIT;
        if (persist_lock_sandbox(s, "rm", 0, 1000, &l, &e) < 0)
            _exit(1);
        if (write(ready[1], "r", 1) != 1)
            _exit(2);
        usleep(100 * 1000);
        if (persist_sandbox_remove(s, "rm", &e) < 0)
            _exit(3);
        persist_unlock(&l);
        _exit(0);
    }
    char b;
    assert_int_equal(read(ready[0], &b, 1), 1);
    persist_lock_t *l = NULL;
    /* We wait on the old lock file; once it is gone, the sandbox is. */
    assert_int_equal(persist_lock_sandbox(s, "rm", 0, 5000, &l, &err), -ENOENT);
    err_clear(&err);
    int st;
    waitpid(child, &st, 0);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    close(ready[0]);
    close(ready[1]);
}

static void test_persist_remove_refuses_mounted_subtree(void **state)
{
    persist_store_t *s = *state;
    err_t err = ERR_INIT;
    if (geteuid() != 0)
        skip();
    persist_sandbox_t sb = {.id = "mnt", .state = "ready"};
    assert_int_equal(persist_sandbox_save(s, &sb, &err), 0);
    char path[512], src[512], keep[600];
    snprintf(path, sizeof path, "%s/mnt/shared", root);
    snprintf(src, sizeof src, "%s/precious", root);
    snprintf(keep, sizeof keep, "%s/file", src);
    mkdir(path, 0700);
    mkdir(src, 0700);
    write_file(keep, "keep me");
    if (mount(src, path, NULL, MS_BIND, NULL) < 0)
        skip();
    assert_int_equal(persist_sandbox_remove(s, "mnt", &err), -EBUSY);
    assert_non_null(strstr(err_str(&err), "still mounted"));
    err_clear(&err);
    assert_int_equal(access(keep, F_OK), 0);
    assert_int_equal(umount2(path, MNT_DETACH), 0);
    assert_int_equal(persist_sandbox_remove(s, "mnt", &err), 0);
    assert_int_equal(access(keep, F_OK), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
        T(test_persist_sandbox_round_trip_keeps_every_field),
        T(test_persist_sandbox_minimal_fields_default),
        T(test_persist_container_round_trip_keeps_every_field),
        T(test_persist_container_without_sandbox_fails),
        T(test_persist_list_find_remove),
        T(test_persist_invalid_ids_refused),
        T(test_persist_crash_before_rename_keeps_old_state),
        T(test_persist_stray_temp_of_live_writer_is_kept),
        T(test_persist_enospc_injection_fails_and_keeps_old),
        T(test_persist_env_fault_eio),
        T(test_persist_corrupt_sandbox_reported_with_file_and_field),
        T(test_persist_corrupt_container_reported),
        T(test_persist_pid_reuse_detected_by_start_time),
        T(test_persist_time_now_is_rfc3339nano),
        T(test_persist_lock_excludes_other_process),
        T(test_persist_lock_missing_sandbox),
        T(test_persist_lock_follows_removed_sandbox),
        T(test_persist_remove_refuses_mounted_subtree),
#undef T
    };
    return cmocka_run_group_tests_name("persist", tests, NULL, NULL);
}
