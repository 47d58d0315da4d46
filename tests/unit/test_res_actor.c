/* The resources actor through a real bus: prepare and release of the
 * sandbox's cgroup (on a fake cgroup tree), share and taps, containers'
 * shares, half-done prepares that undo themselves, bad requests, release
 * twice, release by fini, and adoption of what an earlier daemon left. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "actors/client.h"
#include "bus/bus.h"
#include "common/log.h"
#include "resources/cgroup_host.h"
#include "resources/net.h"
#include "resources/netlink.h"
#include "resources/resource_actor.h"
#include "resources/share.h"

struct fx {
    char tmp[64];     /* everything of the test lives below */
    char root[128];   /* the runtime root */
    char dir[192];    /* the sandbox directory: <root>/sb */
    char cgfs[128];   /* a fake cgroup v2 tree */
    char cgname[128]; /* the sandbox's cgroup name */
    char bundle[192]; /* a bundle with a rootfs */
    bus_t *bus;
    actor_t *res;
    bus_client_t *c;
};

static void put(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static bool there(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static bool there(const char *fmt, ...)
{
    char p[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p, sizeof p, fmt, ap);
    va_end(ap);
    return access(p, F_OK) == 0;
}

/* True when something is mounted at or below path. */
static bool mounted_below(const char *path)
{
    FILE *m = fopen("/proc/self/mountinfo", "r");
    assert_non_null(m);
    char line[4096], mp[4096];
    size_t n = strlen(path);
    bool found = false;
    while (fgets(line, sizeof line, m))
        if (sscanf(line, "%*s %*s %*s %*s %4095s", mp) == 1 && !strncmp(mp, path, n))
            found = true;
    fclose(m);
    return found;
}

static void umount_below(const char *path)
{
    for (int i = 0; i < 16 && mounted_below(path); i++) {
        FILE *m = fopen("/proc/self/mountinfo", "r");
        char line[4096], mp[4096];
        while (m && fgets(line, sizeof line, m))
            if (sscanf(line, "%*s %*s %*s %*s %4095s", mp) == 1 && !strncmp(mp, path, strlen(path)))
                umount2(mp, MNT_DETACH);
        if (m)
            fclose(m);
    }
}

static struct fx *g_fx; /* the test's fixture, freed by the teardown even after a failure */

static void start_actor(struct fx *f)
{
    err_t err = ERR_INIT;
    actor_opts_t ao = {.zctx = bus_context(f->bus), .endpoint = bus_endpoint(f->bus)};
    res_actor_opts_t ro = {.cgroup_fs_root = f->cgfs};
    assert_int_equal(res_actor_start(&ao, &ro, &f->res, &err), 0);
}

static struct fx *fx_new(void)
{
    struct fx *f = calloc(1, sizeof *f);
    strcpy(f->tmp, "/tmp/husk-test-resa-XXXXXX");
    assert_non_null(mkdtemp(f->tmp));
    snprintf(f->root, sizeof f->root, "%s/root", f->tmp);
    snprintf(f->dir, sizeof f->dir, "%s/sb", f->root);
    snprintf(f->cgfs, sizeof f->cgfs, "%s/cgfs", f->tmp);
    snprintf(f->bundle, sizeof f->bundle, "%s/bundle", f->tmp);
    assert_int_equal(mkdir(f->root, 0700), 0);
    assert_int_equal(mkdir(f->dir, 0700), 0);
    assert_int_equal(mkdir(f->cgfs, 0755), 0);
    assert_int_equal(mkdir(f->bundle, 0755), 0);
    char p[256];
    snprintf(p, sizeof p, "%s/rootfs", f->bundle);
    assert_int_equal(mkdir(p, 0755), 0);
    snprintf(p, sizeof p, "%s/cgroup.controllers", f->cgfs);
    put(p, "cpu memory pids\n");
    snprintf(p, sizeof p, "%s/cgroup.subtree_control", f->cgfs);
    put(p, "");
    err_t err = ERR_INIT;
    assert_int_equal(res_actor_cgroup_name(f->root, "sb", f->cgname, sizeof f->cgname, &err), 0);
    char bdir[192];
    snprintf(bdir, sizeof bdir, "%s/bus", f->tmp);
    bus_opts_t bo = {.dir = bdir, .supervise_ms = -1};
    assert_int_equal(bus_new(&bo, &f->bus, &err), 0);
    start_actor(f);
    assert_int_equal(bus_client_new(bus_ipc_endpoint(f->bus), "test", &f->c, &err), 0);
    g_fx = f;
    return f;
}

static void fx_free(struct fx *f)
{
    g_fx = NULL;
    bus_client_destroy(&f->c);
    actor_stop(&f->res, 5000);
    bus_destroy(&f->bus);
    umount_below(f->tmp);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->tmp);
    int rc = system(cmd);
    free(f);
    assert_int_equal(rc, 0);
}

static int fx_teardown(void **state)
{
    unsetenv("HUSK_SHARE_FAIL_AFTER");
    if (g_fx)
        fx_free(g_fx);
    return 0;
}

/* Sends m to the actor; returns 0 or the error's errno, the reply in *out. */
static int call(struct fx *f, msg_t *m, msg_t **out, char *text)
{
    err_t err = ERR_INIT;
    msg_t *r = NULL;
    int rc = bus_client_call(f->c, RES_ACTOR_NAME, &m, 10000, &r, &err);
    snprintf(text, 1024, "%s", rc < 0 ? err_str(&err) : "");
    err_clear(&err);
    if (out)
        *out = r;
    else
        msg_destroy(&r);
    return rc < 0 ? -rc : 0;
}

static msg_t *prepare_msg(struct fx *f, bool vm, const char *netns)
{
    msg_t *m = msg_new(MSG_RES_PREPARE_SANDBOX);
    msg_res_prepare_sandbox_t *b = m->body;
    msg_set_str(&b->sandbox_id, "sb");
    msg_set_str(&b->root, f->root);
    msg_set_str(&b->dir, f->dir);
    b->vm = vm;
    msg_set_str(&b->netns, netns ? netns : "");
    b->memory_bytes = 300 << 20;
    b->cpu_quota_us = 150000;
    b->cpu_period_us = 100000;
    return m;
}

static msg_t *release_msg(void)
{
    msg_t *m = msg_new(MSG_RES_RELEASE_SANDBOX);
    ((msg_res_release_sandbox_t *)m->body)->timeout_ms = 100;
    return m;
}

static bool cg_there(struct fx *f)
{
    return there("%s/husk/%s", f->cgfs, f->cgname);
}

static void need_root(void)
{
    if (geteuid() != 0)
        skip(); /* mounts need CAP_SYS_ADMIN */
}

/* ---- tests --------------------------------------------------------------------- */

static void test_res_actor_cgroup_name_is_per_root_and_stable(void **s)
{
    char a[128], b[128], c[128];
    err_t err = ERR_INIT;
    assert_int_equal(res_actor_cgroup_name("/run/husk-x-none", "pod1", a, sizeof a, &err), 0);
    assert_int_equal(res_actor_cgroup_name("/run/husk-x-none/", "pod1", b, sizeof b, &err), 0);
    assert_string_equal(a, b); /* trailing slashes do not count */
    assert_int_equal(strncmp(a, "pod1-", 5), 0);
    assert_int_equal(strlen(a), strlen("pod1-") + 12);
    assert_int_equal(res_actor_cgroup_name("/run/husk-y-none", "pod1", c, sizeof c, &err), 0);
    assert_string_not_equal(a, c); /* two roots, one id: two cgroups */
    assert_int_equal(res_actor_cgroup_name("relative", "pod1", c, sizeof c, &err), -EINVAL);
    assert_non_null(strstr(err_str(&err), "not an absolute path"));
    err_clear(&err);
    assert_int_equal(res_actor_cgroup_name("/run", "../x", c, sizeof c, &err), -EINVAL);
    err_clear(&err);
    assert_int_equal(res_actor_cgroup_name("/run", "pod1", c, 8, &err), -ENAMETOOLONG);
    err_clear(&err);
}

static void test_res_actor_cgroup_prepare_add_pid_release_twice(void **s)
{
    struct fx *f = fx_new();
    char text[1024];
    msg_t *r = NULL;
    assert_int_equal(call(f, prepare_msg(f, false, NULL), &r, text), 0);
    msg_res_sandbox_ready_t *b = MSG_BODY(r, RES_SANDBOX_READY, res_sandbox_ready);
    assert_non_null(b);
    char want[512];
    snprintf(want, sizeof want, "%s/husk/%s", f->cgfs, f->cgname);
    assert_string_equal(b->cgroup, want);
    assert_string_equal(b->share_dir, ""); /* no VM: no share */
    assert_int_equal(b->taps.n, 0);
    assert_string_equal(b->interfaces, "[]");
    msg_destroy(&r);
    assert_true(cg_there(f));
    /* a second prepare is refused and changes nothing */
    assert_int_equal(call(f, prepare_msg(f, false, NULL), NULL, text), EALREADY);
    msg_t *m = msg_new(MSG_RES_ADD_PID);
    ((msg_res_add_pid_t *)m->body)->pid = 4321;
    assert_int_equal(call(f, m, NULL, text), 0);
    char procs[512];
    snprintf(procs, sizeof procs, "%s/husk/%s/cgroup.procs", f->cgfs, f->cgname);
    FILE *p = fopen(procs, "r");
    char got[32] = "";
    assert_non_null(fgets(got, sizeof got, p));
    fclose(p);
    assert_string_equal(got, "4321");
    /* a process still in it: the release says so (and forgets it) */
    assert_int_equal(call(f, release_msg(), NULL, text), EIO);
    assert_non_null(strstr(text, "still holds processes 4321"));
    /* released twice: nothing held, nothing to say */
    assert_int_equal(call(f, release_msg(), NULL, text), 0);
    put(procs, "");
    /* prepare again: the leftover of the failed release is reused */
    assert_int_equal(call(f, prepare_msg(f, false, NULL), &r, text), 0);
    b = MSG_BODY(r, RES_SANDBOX_READY, res_sandbox_ready);
    assert_true(b->warnings.n >= 1);
    assert_non_null(strstr(b->warnings.v[0], "left by an earlier daemon"));
    msg_destroy(&r);
    assert_int_equal(call(f, release_msg(), NULL, text), 0);
    assert_false(cg_there(f));
    assert_int_equal(call(f, release_msg(), NULL, text), 0);
    fx_free(f);
}

static void test_res_actor_share_failure_after_cgroup_leaves_nothing(void **s)
{
    need_root();
    struct fx *f = fx_new();
    char text[1024];
    /* the share's first step fails: the cgroup made before goes too */
    for (int step = 0; step < 3; step++) {
        char v[8];
        snprintf(v, sizeof v, "%d", step);
        setenv("HUSK_SHARE_FAIL_AFTER", v, 1);
        assert_int_equal(call(f, prepare_msg(f, true, NULL), NULL, text), EIO);
        unsetenv("HUSK_SHARE_FAIL_AFTER");
        assert_non_null(strstr(text, "set up the share"));
        assert_false(cg_there(f));
        assert_false(mounted_below(f->dir));
        assert_false(there("%s/" RES_SHARE_DIR, f->dir));
    }
    /* a bad namespace fails after cgroup and share: both go */
    assert_int_equal(call(f, prepare_msg(f, true, "/nonexistent/netns"), NULL, text), ENOENT);
    assert_non_null(strstr(text, "/nonexistent/netns"));
    assert_false(cg_there(f));
    assert_false(mounted_below(f->dir));
    /* and then it works */
    assert_int_equal(call(f, prepare_msg(f, true, NULL), NULL, text), 0);
    assert_true(cg_there(f));
    assert_true(mounted_below(f->dir));
    assert_int_equal(call(f, release_msg(), NULL, text), 0);
    assert_false(cg_there(f));
    assert_false(mounted_below(f->dir));
    fx_free(f);
}

static msg_t *container_msg(struct fx *f, const char *id)
{
    msg_t *m = msg_new(MSG_RES_PREPARE_CONTAINER);
    msg_res_prepare_container_t *b = m->body;
    msg_set_str(&b->container_id, id);
    msg_set_str(&b->bundle, f->bundle);
    msg_set_str(&b->spec,
                "{\"ociVersion\":\"1.0.2\",\"root\":{\"path\":\"rootfs\"},"
                "\"process\":{\"args\":[\"sh\"],\"cwd\":\"/\",\"user\":{\"uid\":0,\"gid\":0}},"
                "\"mounts\":[{\"destination\":\"/data\",\"type\":\"bind\","
                "\"source\":\"rootfs\",\"options\":[\"rbind\",\"ro\"]}]}");
    return m;
}

static msg_t *release_ctr_msg(const char *id)
{
    msg_t *m = msg_new(MSG_RES_RELEASE_CONTAINER);
    msg_set_str(&((msg_res_release_container_t *)m->body)->container_id, id);
    return m;
}

static void test_res_actor_container_shares_and_unknown_container(void **s)
{
    need_root();
    struct fx *f = fx_new();
    char text[1024];
    msg_t *r = NULL;
    /* no share yet */
    assert_int_equal(call(f, container_msg(f, "c1"), NULL, text), ENOENT);
    assert_non_null(strstr(text, "has no share"));
    assert_int_equal(call(f, prepare_msg(f, true, NULL), &r, text), 0);
    msg_res_sandbox_ready_t *sb = MSG_BODY(r, RES_SANDBOX_READY, res_sandbox_ready);
    char want[512];
    snprintf(want, sizeof want, "%s/" RES_SHARE_DIR, f->dir);
    assert_string_equal(sb->share_dir, want);
    assert_string_equal(sb->share_tag, RES_SHARE_TAG);
    msg_destroy(&r);
    if (call(f, container_msg(f, "c1"), &r, text))
        fail_msg("prepare_container: %s", text);
    msg_res_container_ready_t *b = MSG_BODY(r, RES_CONTAINER_READY, res_container_ready);
    assert_non_null(b);
    assert_string_equal(b->rootfs, RES_SHARE_GUEST_ROOT "/c1/rootfs");
    assert_non_null(strstr(b->spec, "\"path\":\"" RES_SHARE_GUEST_ROOT "/c1/rootfs\""));
    assert_non_null(strstr(b->spec, RES_SHARE_GUEST_ROOT "/c1/mounts/0"));
    msg_destroy(&r);
    char c1[512];
    snprintf(c1, sizeof c1, "%s/" RES_SHARE_DIR "/c1", f->dir);
    assert_true(mounted_below(c1));
    /* twice: refused; a bad id, a bad spec: refused, nothing made */
    assert_int_equal(call(f, container_msg(f, "c1"), NULL, text), EEXIST);
    assert_int_equal(call(f, container_msg(f, "../c2"), NULL, text), EINVAL);
    assert_non_null(strstr(text, "container_id"));
    msg_t *m = container_msg(f, "c2");
    msg_set_str(&((msg_res_prepare_container_t *)m->body)->spec, "{\"root\":{\"path\":\"nope\"}}");
    assert_int_not_equal(call(f, m, NULL, text), 0);
    assert_false(there("%s/" RES_SHARE_DIR "/c2", f->dir));
    /* released, then unknown */
    assert_int_equal(call(f, release_ctr_msg("c1"), NULL, text), 0);
    assert_false(mounted_below(c1));
    assert_false(there("%s", c1));
    assert_int_equal(call(f, release_ctr_msg("c1"), NULL, text), ENOENT);
    assert_non_null(strstr(text, "`c1` has no share"));
    assert_int_equal(call(f, release_ctr_msg("nosuch"), NULL, text), ENOENT);
    /* one left shared: the sandbox release takes it */
    assert_int_equal(call(f, container_msg(f, "c3"), NULL, text), 0);
    assert_int_equal(call(f, release_msg(), NULL, text), 0);
    assert_false(mounted_below(f->dir));
    assert_false(there("%s/" RES_SHARE_DIR, f->dir));
    assert_int_equal(call(f, release_msg(), NULL, text), 0);
    fx_free(f);
}

static void test_res_actor_bad_requests_are_refused_by_field(void **s)
{
    struct fx *f = fx_new();
    char text[1024];
    msg_t *m = prepare_msg(f, false, NULL);
    msg_set_str(&((msg_res_prepare_sandbox_t *)m->body)->dir, "relative/dir");
    assert_int_equal(call(f, m, NULL, text), EINVAL);
    assert_non_null(strstr(text, "dir `relative/dir` is not an absolute path"));
    m = prepare_msg(f, false, NULL);
    msg_set_str(&((msg_res_prepare_sandbox_t *)m->body)->sandbox_id, "a/b");
    assert_int_equal(call(f, m, NULL, text), EINVAL);
    assert_non_null(strstr(text, "sandbox_id"));
    m = prepare_msg(f, false, NULL);
    msg_strv_push(&((msg_res_prepare_sandbox_t *)m->body)->taps, "tap0_husk");
    assert_int_equal(call(f, m, NULL, text), EINVAL);
    assert_non_null(strstr(text, "1 taps but 0 macs"));
    m = prepare_msg(f, false, NULL);
    msg_res_prepare_sandbox_t *b = m->body;
    b->adopt = true;
    msg_strv_push(&b->taps, "tap0_husk");
    msg_strv_push(&b->macs, "zz:00");
    assert_int_equal(call(f, m, NULL, text), EINVAL);
    assert_non_null(strstr(text, "macs[0]"));
    m = prepare_msg(f, false, NULL);
    ((msg_res_prepare_sandbox_t *)m->body)->cpu_period_us = 5000000;
    assert_int_equal(call(f, m, NULL, text), EINVAL);
    assert_non_null(strstr(text, "cpu_period_us"));
    /* nothing prepared: nothing to act on */
    m = msg_new(MSG_RES_ADD_PID);
    ((msg_res_add_pid_t *)m->body)->pid = 1;
    assert_int_equal(call(f, m, NULL, text), ENOENT);
    assert_int_equal(call(f, msg_new(MSG_RES_RESCAN_NETWORK), NULL, text), ENOENT);
    m = msg_new(MSG_RES_RELEASE_ENDPOINT);
    msg_set_str(&((msg_res_release_endpoint_t *)m->body)->tap, "tap0_husk");
    assert_int_equal(call(f, m, NULL, text), ENOENT);
    assert_false(cg_there(f));
    /* a pid that is none */
    assert_int_equal(call(f, prepare_msg(f, false, NULL), NULL, text), 0);
    m = msg_new(MSG_RES_ADD_PID);
    assert_int_equal(call(f, m, NULL, text), EINVAL);
    assert_non_null(strstr(text, "not a process id"));
    /* a message the actor does not serve */
    assert_int_not_equal(call(f, msg_new(MSG_HV_PAUSE), NULL, text), 0);
    assert_int_equal(call(f, release_msg(), NULL, text), 0);
    fx_free(f);
}

/* What an actor holds when it stops goes with it. */
static void test_res_actor_fini_releases_what_is_held(void **s)
{
    need_root();
    struct fx *f = fx_new();
    char text[1024];
    assert_int_equal(call(f, prepare_msg(f, true, NULL), NULL, text), 0);
    assert_int_equal(call(f, container_msg(f, "c1"), NULL, text), 0);
    assert_true(cg_there(f));
    assert_true(mounted_below(f->dir));
    assert_int_equal(actor_stop(&f->res, 5000), 0);
    assert_false(cg_there(f));
    assert_false(mounted_below(f->dir));
    assert_false(there("%s/" RES_SHARE_DIR, f->dir));
    fx_free(f);
}

/* An earlier daemon left the cgroup, the share and a container's share:
 * adoption takes them without creating anything; the release removes them. */
static void test_res_actor_adopt_takes_over_and_release_removes(void **s)
{
    need_root();
    struct fx *f = fx_new();
    char text[1024];
    err_t err = ERR_INIT;
    /* the earlier daemon's work, by the library */
    res_cgroup_opts_t o = {.fs_root = f->cgfs};
    res_cgroup_limits_t lim = {.memory_bytes = 1 << 30};
    res_cgroup_t *cg = NULL;
    assert_int_equal(res_cgroup_create(&o, f->cgname, &lim, &cg, &err), 0);
    res_cgroup_destroy(&cg);
    assert_int_equal(res_share_setup(f->dir, NULL, &err), 0);
    oci_spec_t *spec = NULL;
    const char *js = "{\"ociVersion\":\"1.0.2\",\"root\":{\"path\":\"rootfs\"}}";
    assert_int_equal(oci_spec_parse(js, strlen(js), &spec, &err), 0);
    res_container_share_t *sh = NULL;
    assert_int_equal(res_share_add_container(f->dir, "old1", spec, f->bundle, &sh, &err), 0);
    res_container_share_free(&sh);
    oci_spec_destroy(&spec);
    char memmax[512];
    snprintf(memmax, sizeof memmax, "%s/husk/%s/memory.max", f->cgfs, f->cgname);
    put(memmax, "1073741824"); /* the earlier limit: adoption must not rewrite it */

    msg_t *m = prepare_msg(f, true, NULL), *r = NULL;
    ((msg_res_prepare_sandbox_t *)m->body)->adopt = true;
    assert_int_equal(call(f, m, &r, text), 0);
    msg_res_sandbox_ready_t *b = MSG_BODY(r, RES_SANDBOX_READY, res_sandbox_ready);
    char want[512];
    snprintf(want, sizeof want, "%s/husk/%s", f->cgfs, f->cgname);
    assert_string_equal(b->cgroup, want);
    snprintf(want, sizeof want, "%s/" RES_SHARE_DIR, f->dir);
    assert_string_equal(b->share_dir, want);
    msg_destroy(&r);
    FILE *p = fopen(memmax, "r");
    char got[64] = "";
    assert_non_null(fgets(got, sizeof got, p));
    fclose(p);
    assert_string_equal(got, "1073741824");
    /* the adopted container's share is known: released by name */
    assert_int_equal(call(f, release_ctr_msg("old1"), NULL, text), 0);
    assert_false(there("%s/" RES_SHARE_DIR "/old1", f->dir));
    assert_int_equal(call(f, release_msg(), NULL, text), 0);
    assert_false(cg_there(f));
    assert_false(mounted_below(f->dir));
    assert_false(there("%s/" RES_SHARE_DIR, f->dir));

    /* nothing left to adopt: said, and nothing made */
    m = prepare_msg(f, true, NULL);
    ((msg_res_prepare_sandbox_t *)m->body)->adopt = true;
    assert_int_equal(call(f, m, &r, text), 0);
    b = MSG_BODY(r, RES_SANDBOX_READY, res_sandbox_ready);
    assert_int_equal(b->warnings.n, 2);
    assert_non_null(strstr(b->warnings.v[0], "has no cgroup"));
    assert_non_null(strstr(b->warnings.v[1], "no share"));
    msg_destroy(&r);
    assert_false(cg_there(f));
    assert_false(mounted_below(f->dir));
    assert_int_equal(call(f, release_msg(), NULL, text), 0);
    fx_free(f);
}

/* ---- a real network namespace (ip and tc from iproute2) ---- */

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return system(cmd);
}

static char g_ns[64];

static int setup_ns(void **state)
{
    g_ns[0] = 0;
    if (geteuid() != 0 || sh("command -v ip >/dev/null && command -v tc >/dev/null") != 0)
        return 0;
    char name[64];
    snprintf(name, sizeof name, "husk-ra-%d", (int)getpid());
    sh("ip netns del %s 2>/dev/null", name);
    if (sh("ip netns add %s && ip -n %s link add eth0 address 0a:58:0a:4d:00:02 type veth peer "
           "name peer0 address 0a:58:0a:4d:00:03 && ip -n %s addr add 10.77.0.2/24 dev eth0 && "
           "ip -n %s link set eth0 up && ip -n %s link set peer0 up",
           name, name, name, name, name) != 0) {
        sh("ip netns del %s 2>/dev/null", name);
        return 0;
    }
    snprintf(g_ns, sizeof g_ns, "%s", name);
    return 0;
}

static int teardown_ns(void **state)
{
    fx_teardown(state);
    if (g_ns[0])
        sh("ip netns del %s", g_ns);
    g_ns[0] = 0;
    return 0;
}

static bool ns_has(const char *what)
{
    return sh("{ ip -n %s -o link; tc -n %s filter show dev eth0 ingress; } 2>/dev/null | "
              "grep -q '%s'",
              g_ns, g_ns, what) == 0;
}

/* prepare makes a tap per interface; fini (the actor stops) removes them. */
static void test_res_actor_taps_prepared_and_released_by_fini(void **s)
{
    if (!g_ns[0])
        skip();
    struct fx *f = fx_new();
    char text[1024], path[128];
    snprintf(path, sizeof path, "/run/netns/%s", g_ns);
    msg_t *r = NULL;
    assert_int_equal(call(f, prepare_msg(f, true, path), &r, text), 0);
    msg_res_sandbox_ready_t *b = MSG_BODY(r, RES_SANDBOX_READY, res_sandbox_ready);
    assert_int_equal(b->taps.n, 2);
    assert_int_equal(b->macs.n, 2);
    assert_non_null(strstr(b->interfaces, "\"10.77.0.2/24\""));
    msg_destroy(&r);
    assert_true(ns_has("tap0_husk"));
    assert_true(ns_has("tap1_husk"));
    /* nothing new: a rescan adds and removes nothing */
    assert_int_equal(call(f, msg_new(MSG_RES_RESCAN_NETWORK), &r, text), 0);
    msg_res_network_changes_t *ch = MSG_BODY(r, RES_NETWORK_CHANGES, res_network_changes);
    assert_int_equal(ch->taps.n, 0);
    assert_int_equal(ch->removed_taps.n, 0);
    msg_destroy(&r);
    assert_int_equal(actor_stop(&f->res, 5000), 0);
    assert_false(ns_has("_husk"));
    assert_false(ns_has("mirred"));
    assert_false(cg_there(f));
    fx_free(f);
}

/* The namespace's links and qdiscs, into path. */
static void ns_snapshot(const char *path)
{
    assert_int_equal(sh("{ ip -n %s -o link | sed 's/link-netnsid [0-9]*//'; tc -n %s qdisc show; "
                        "} >%s 2>&1",
                        g_ns, g_ns, path),
                     0);
}

/* Taps an earlier daemon attached: adopted by name, MAC and attach state,
 * not made again, removed by the release, which leaves the namespace as it
 * was before the earlier attach (its ingress qdiscs and queue lengths). */
static void test_res_actor_adopt_taps(void **s)
{
    if (!g_ns[0])
        skip();
    struct fx *f = fx_new();
    char text[1024], path[128], before[96], after[96];
    snprintf(path, sizeof path, "/run/netns/%s", g_ns);
    snprintf(before, sizeof before, "/tmp/husk-ra-before.%d", (int)getpid());
    snprintf(after, sizeof after, "/tmp/husk-ra-after.%d", (int)getpid());
    ns_snapshot(before);
    static res_net_t earlier;
    err_t err = ERR_INIT;
    memset(&earlier, 0, sizeof earlier);
    assert_int_equal(res_net_scan(path, &earlier, &err), 0);
    assert_int_equal(res_net_attach(&earlier, &err), 0);
    msg_t *m = prepare_msg(f, true, path), *r = NULL;
    msg_res_prepare_sandbox_t *q = m->body;
    q->adopt = true;
    for (unsigned i = 0; i < earlier.n_ifs; i++) {
        char mac[18], st[RES_NET_STATE_MAX];
        res_nl_mac_format(earlier.ifs[i].mac, mac);
        res_net_attach_state(&earlier.ifs[i], st);
        msg_strv_push(&q->taps, earlier.ifs[i].tap);
        msg_strv_push(&q->macs, mac);
        msg_strv_push(&q->states, st);
    }
    close(earlier.held_fd); /* the earlier daemon is gone */
    /* a state that does not parse is refused, naming it */
    msg_t *bad = prepare_msg(f, true, path);
    ((msg_res_prepare_sandbox_t *)bad->body)->adopt = true;
    msg_strv_push(&((msg_res_prepare_sandbox_t *)bad->body)->taps, "tap0_husk");
    msg_strv_push(&((msg_res_prepare_sandbox_t *)bad->body)->macs, "0a:58:0a:4d:00:02");
    msg_strv_push(&((msg_res_prepare_sandbox_t *)bad->body)->states, "qdisc=2,txqlen=0");
    assert_int_not_equal(call(f, bad, NULL, text), 0);
    assert_non_null(strstr(text, "qdisc=2,txqlen=0"));
    assert_int_equal(call(f, m, &r, text), 0);
    msg_res_sandbox_ready_t *b = MSG_BODY(r, RES_SANDBOX_READY, res_sandbox_ready);
    assert_int_equal(b->taps.n, 2);
    msg_destroy(&r);
    assert_false(ns_has("tap2_husk")); /* nothing made */
    /* adopted interfaces are known: a rescan finds nothing new */
    assert_int_equal(call(f, msg_new(MSG_RES_RESCAN_NETWORK), &r, text), 0);
    assert_int_equal(MSG_BODY(r, RES_NETWORK_CHANGES, res_network_changes)->taps.n, 0);
    msg_destroy(&r);
    /* one tap by name, then the rest with the sandbox */
    m = msg_new(MSG_RES_RELEASE_ENDPOINT);
    msg_set_str(&((msg_res_release_endpoint_t *)m->body)->tap, "tap1_husk");
    assert_int_equal(call(f, m, NULL, text), 0);
    assert_false(ns_has("tap1_husk"));
    assert_true(ns_has("tap0_husk"));
    assert_int_equal(call(f, release_msg(), NULL, text), 0);
    assert_false(ns_has("_husk"));
    assert_false(ns_has("mirred"));
    ns_snapshot(after);
    int same = sh("cmp -s %s %s", before, after);
    if (same != 0)
        sh("diff %s %s >&2", before, after);
    unlink(before);
    unlink(after);
    assert_int_equal(same, 0);
    fx_free(f);
}

int main(void)
{
    log_setup(2, LOG_FMT_LOGFMT, LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_res_actor_cgroup_name_is_per_root_and_stable, fx_teardown),
        cmocka_unit_test_teardown(test_res_actor_cgroup_prepare_add_pid_release_twice, fx_teardown),
        cmocka_unit_test_teardown(test_res_actor_share_failure_after_cgroup_leaves_nothing,
                                  fx_teardown),
        cmocka_unit_test_teardown(test_res_actor_container_shares_and_unknown_container,
                                  fx_teardown),
        cmocka_unit_test_teardown(test_res_actor_bad_requests_are_refused_by_field, fx_teardown),
        cmocka_unit_test_teardown(test_res_actor_fini_releases_what_is_held, fx_teardown),
        cmocka_unit_test_teardown(test_res_actor_adopt_takes_over_and_release_removes, fx_teardown),
        cmocka_unit_test_setup_teardown(test_res_actor_taps_prepared_and_released_by_fini, setup_ns,
                                        teardown_ns),
        cmocka_unit_test_setup_teardown(test_res_actor_adopt_taps, setup_ns, teardown_ns),
    };
    return cmocka_run_group_tests_name("res_actor", tests, NULL, NULL);
}
