/* Unit tests for oci/spec: parsing runtime-spec configs, refusing hostile
 * ones with errors that name the JSON path, round trips, CRI helpers. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "oci/spec.h"

/* JSON written with single quotes for readability; q() swaps them. */
static char *q(const char *s)
{
    char *d = strdup(s);
    for (char *p = d; *p; p++)
        if (*p == '\'')
            *p = '"';
    return d;
}

/* What `runc spec` (1.1) writes, plus a uid mapping-less rootless-free
 * layout: the canonical config. */
static const char *runc_spec =
    "{ 'ociVersion': '1.0.2-dev',"
    "  'process': { 'terminal': true, 'user': { 'uid': 0, 'gid': 0 }, 'args': [ 'sh' ],"
    "    'env': [ 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',"
    "             'TERM=xterm' ],"
    "    'cwd': '/',"
    "    'capabilities': {"
    "      'bounding': [ 'CAP_AUDIT_WRITE', 'CAP_KILL', 'CAP_NET_BIND_SERVICE' ],"
    "      'effective': [ 'CAP_AUDIT_WRITE', 'CAP_KILL', 'CAP_NET_BIND_SERVICE' ],"
    "      'permitted': [ 'CAP_AUDIT_WRITE', 'CAP_KILL', 'CAP_NET_BIND_SERVICE' ],"
    "      'ambient': [ 'CAP_AUDIT_WRITE', 'CAP_KILL', 'CAP_NET_BIND_SERVICE' ] },"
    "    'rlimits': [ { 'type': 'RLIMIT_NOFILE', 'hard': 1024, 'soft': 1024 } ],"
    "    'noNewPrivileges': true },"
    "  'root': { 'path': 'rootfs', 'readonly': true },"
    "  'hostname': 'runc',"
    "  'mounts': ["
    "    { 'destination': '/proc', 'type': 'proc', 'source': 'proc' },"
    "    { 'destination': '/dev', 'type': 'tmpfs', 'source': 'tmpfs',"
    "      'options': [ 'nosuid', 'strictatime', 'mode=755', 'size=65536k' ] },"
    "    { 'destination': '/dev/pts', 'type': 'devpts', 'source': 'devpts',"
    "      'options': [ 'nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620',"
    "                   'gid=5' ] },"
    "    { 'destination': '/dev/shm', 'type': 'tmpfs', 'source': 'shm',"
    "      'options': [ 'nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k' ] },"
    "    { 'destination': '/dev/mqueue', 'type': 'mqueue', 'source': 'mqueue',"
    "      'options': [ 'nosuid', 'noexec', 'nodev' ] },"
    "    { 'destination': '/sys', 'type': 'sysfs', 'source': 'sysfs',"
    "      'options': [ 'nosuid', 'noexec', 'nodev', 'ro' ] },"
    "    { 'destination': '/sys/fs/cgroup', 'type': 'cgroup', 'source': 'cgroup',"
    "      'options': [ 'nosuid', 'noexec', 'nodev', 'relatime', 'ro' ] } ],"
    "  'linux': {"
    "    'resources': { 'devices': [ { 'allow': false, 'access': 'rwm' } ] },"
    "    'namespaces': [ { 'type': 'pid' }, { 'type': 'network' }, { 'type': 'ipc' },"
    "                    { 'type': 'uts' }, { 'type': 'mount' } ],"
    "    'maskedPaths': [ '/proc/acpi', '/proc/asound', '/proc/kcore', '/proc/keys',"
    "      '/proc/latency_stats', '/proc/timer_list', '/proc/timer_stats',"
    "      '/proc/sched_debug', '/sys/firmware', '/proc/scsi' ],"
    "    'readonlyPaths': [ '/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys',"
    "      '/proc/sysrq-trigger' ] } }";

/* Shaped like what podman 4 hands to its runtime (trimmed): annotations,
 * cgroupsPath slice form, sysctl, seccomp with argument filters, hooks,
 * user namespace with mappings, 1.1 fields, unknown extension fields. */
static const char *podman_spec =
    "{ 'ociVersion': '1.1.0',"
    "  'process': { 'user': { 'uid': 1000, 'gid': 1000, 'umask': 18,"
    "                          'additionalGids': [ 10, 1000 ] },"
    "    'args': [ '/bin/sh', '-c', 'echo hi' ], 'env': [ 'container=podman', 'HOME=/root' ],"
    "    'cwd': '/work', 'terminal': false, 'consoleSize': { 'height': 24, 'width': 80 },"
    "    'capabilities': { 'bounding': [ 'CAP_CHOWN', 'CAP_SETUID' ],"
    "                      'effective': [ 'CAP_CHOWN' ], 'permitted': [ 'CAP_CHOWN' ] },"
    "    'oomScoreAdj': 100, 'apparmorProfile': '', 'selinuxLabel': null,"
    "    'ioPriority': { 'class': 'IOPRIO_CLASS_BE', 'priority': 4 },"
    "    'x-podman-extension': { 'keep': 'me' } },"
    "  'root': { 'path': '/var/lib/containers/storage/overlay/abc/merged' },"
    "  'hostname': 'a1b2c3', 'domainname': 'example.org',"
    "  'mounts': [ { 'destination': '/etc/hosts', 'type': 'bind',"
    "      'source': '/run/containers/storage/hosts', 'options': [ 'bind', 'rprivate', 'ro' ] },"
    "    { 'destination': '/proc', 'type': 'proc', 'source': 'proc',"
    "      'options': [ 'nosuid', 'noexec', 'nodev' ] } ],"
    "  'hooks': { 'prestart': [ { 'path': '/usr/libexec/hook', 'args': [ 'hook', 'prestart' ],"
    "      'env': [ 'A=1' ], 'timeout': 5 } ],"
    "    'poststop': [ { 'path': '/usr/bin/cleanup' } ] },"
    "  'annotations': { 'io.container.manager': 'libpod',"
    "                   'org.opencontainers.image.stopSignal': '15' },"
    "  'linux': {"
    "    'uidMappings': [ { 'containerID': 0, 'hostID': 100000, 'size': 65536 } ],"
    "    'gidMappings': [ { 'containerID': 0, 'hostID': 100000, 'size': 65536 } ],"
    "    'sysctl': { 'net.ipv4.ping_group_range': '0 0' },"
    "    'resources': { 'pids': { 'limit': 2048 },"
    "      'memory': { 'limit': 536870912, 'swap': 1073741824, 'disableOOMKiller': false },"
    "      'cpu': { 'shares': 512, 'quota': 50000, 'period': 100000, 'cpus': '0-1' },"
    "      'blockIO': { 'weight': 500 },"
    "      'hugepageLimits': [ { 'pageSize': '2MB', 'limit': 0 } ],"
    "      'unified': { 'memory.high': '400000000' } },"
    "    'cgroupsPath': 'machine.slice:libpod:a1b2c3',"
    "    'namespaces': [ { 'type': 'pid' }, { 'type': 'network', 'path': '/run/netns/cni-1' },"
    "                    { 'type': 'ipc' }, { 'type': 'uts' }, { 'type': 'mount' },"
    "                    { 'type': 'user' }, { 'type': 'cgroup' } ],"
    "    'devices': [ { 'path': '/dev/fuse', 'type': 'c', 'major': 10, 'minor': 229,"
    "                   'fileMode': 438, 'uid': 0, 'gid': 0 } ],"
    "    'seccomp': { 'defaultAction': 'SCMP_ACT_ERRNO', 'defaultErrnoRet': 38,"
    "      'architectures': [ 'SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32' ],"
    "      'flags': [ 'SECCOMP_FILTER_FLAG_SPEC_ALLOW' ],"
    "      'syscalls': [ { 'names': [ 'read', 'write', 'exit_group' ], 'action': 'SCMP_ACT_ALLOW' "
    "},"
    "        { 'names': [ 'personality' ], 'action': 'SCMP_ACT_ALLOW',"
    "          'args': [ { 'index': 0, 'value': 4294967295, 'op': 'SCMP_CMP_EQ' } ] },"
    "        { 'names': [ 'clone' ], 'action': 'SCMP_ACT_ALLOW',"
    "          'args': [ { 'index': 0, 'value': 2114060288, 'valueTwo': 0,"
    "                      'op': 'SCMP_CMP_MASKED_EQ' } ] },"
    "        { 'names': [ 'mkdir' ], 'action': 'SCMP_ACT_ERRNO', 'errnoRet': 1 } ] },"
    "    'rootfsPropagation': 'rslave',"
    "    'maskedPaths': [ '/proc/kcore' ], 'readonlyPaths': [ '/proc/sys' ],"
    "    'mountLabel': 'system_u:object_r:container_file_t:s0' },"
    "  'x-top-level-extension': 42 }";

static oci_spec_t *parse_ok(const char *single_quoted)
{
    char *json = q(single_quoted);
    oci_spec_t *spec = NULL;
    err_t err = ERR_INIT;
    int r = oci_spec_parse(json, strlen(json), &spec, &err);
    if (r < 0)
        fail_msg("parse failed: %s", err_str(&err));
    free(json);
    err_clear(&err);
    return spec;
}

/* Parses a hostile document and checks the error message starts with
 * the expected path-qualified text. */
static void expect_error(const char *single_quoted, const char *want_prefix)
{
    char *json = q(single_quoted);
    oci_spec_t *spec = NULL;
    err_t err = ERR_INIT;
    int r = oci_spec_parse(json, strlen(json), &spec, &err);
    free(json);
    if (r >= 0) {
        oci_spec_destroy(&spec);
        fail_msg("expected error \"%s\", parse succeeded", want_prefix);
    }
    assert_null(spec);
    assert_int_equal(err.code, EINVAL);
    if (strncmp(err_str(&err), want_prefix, strlen(want_prefix)) != 0)
        fail_msg("error \"%s\" does not start with \"%s\"", err_str(&err), want_prefix);
    err_clear(&err);
}

#define MINIMAL_HEAD "{ 'ociVersion': '1.0.2', 'root': { 'path': 'rootfs' }, "
#define PROC(user)   "'process': { 'user': " user ", 'args': ['sh'], 'cwd': '/' }"

static void test_oci_spec_runc_default_parses(void **state)
{
    oci_spec_t *s = parse_ok(runc_spec);
    assert_string_equal(s->oci_version, "1.0.2-dev");
    assert_non_null(s->process);
    assert_true(s->process->terminal);
    assert_int_equal(s->process->user.uid, 0);
    assert_int_equal(s->process->n_args, 1);
    assert_string_equal(s->process->args[0], "sh");
    assert_null(s->process->args[1]);
    assert_int_equal(s->process->n_env, 2);
    assert_true(s->process->has_capabilities);
    assert_int_equal(s->process->n_caps[OCI_CAP_BOUNDING], 3);
    assert_int_equal(s->process->n_caps[OCI_CAP_INHERITABLE], 0);
    assert_non_null(s->process->caps[OCI_CAP_INHERITABLE]);
    assert_string_equal(s->process->caps[OCI_CAP_AMBIENT][1], "CAP_KILL");
    assert_int_equal(s->process->n_rlimits, 1);
    assert_string_equal(s->process->rlimits[0].type, "RLIMIT_NOFILE");
    assert_int_equal(s->process->rlimits[0].hard, 1024);
    assert_true(s->process->no_new_privileges);
    assert_false(s->process->oom_score_adj.set);
    assert_string_equal(s->root_path, "rootfs");
    assert_true(s->root_readonly);
    assert_string_equal(s->hostname, "runc");
    assert_int_equal(s->n_mounts, 7);
    assert_string_equal(s->mounts[2].destination, "/dev/pts");
    assert_string_equal(s->mounts[2].type, "devpts");
    assert_int_equal(s->mounts[2].n_options, 6);
    assert_string_equal(s->mounts[2].options[3], "ptmxmode=0666");
    assert_int_equal(s->mounts[0].n_options, 0);
    assert_non_null(s->lnx);
    assert_int_equal(s->lnx->n_namespaces, 5);
    assert_int_equal(s->lnx->namespaces[1].type, OCI_NS_NETWORK);
    assert_null(s->lnx->namespaces[1].path);
    assert_non_null(s->lnx->resources);
    assert_int_equal(s->lnx->resources->n_devices, 1);
    assert_false(s->lnx->resources->devices[0].allow);
    assert_null(s->lnx->resources->devices[0].type);
    assert_string_equal(s->lnx->resources->devices[0].access, "rwm");
    assert_int_equal(s->lnx->n_masked_paths, 10);
    assert_int_equal(s->lnx->n_readonly_paths, 5);
    assert_null(s->lnx->seccomp);
    oci_spec_destroy(&s);
    assert_null(s);
    oci_spec_destroy(&s); /* idempotent */
    oci_spec_destroy(NULL);
}

static void test_oci_spec_podman_like_parses(void **state)
{
    oci_spec_t *s = parse_ok(podman_spec);
    oci_process_t *p = s->process;
    assert_int_equal(p->user.uid, 1000);
    assert_true(p->user.umask.set);
    assert_int_equal(p->user.umask.value, 18);
    assert_int_equal(p->user.n_additional_gids, 2);
    assert_int_equal(p->user.additional_gids[0], 10);
    assert_true(p->has_console_size);
    assert_int_equal(p->console_width, 80);
    assert_int_equal(p->n_caps[OCI_CAP_AMBIENT], 0);
    assert_int_equal(p->oom_score_adj.value, 100);
    assert_string_equal(p->apparmor_profile, "");
    assert_null(p->selinux_label);
    assert_true(p->has_io_priority);
    assert_int_equal(p->io_priority, 4);
    assert_string_equal(s->domainname, "example.org");
    assert_string_equal(s->mounts[0].type, "bind");
    assert_int_equal(s->n_hooks[OCI_HOOK_PRESTART], 1);
    assert_string_equal(s->hooks[OCI_HOOK_PRESTART][0].args[1], "prestart");
    assert_int_equal(s->hooks[OCI_HOOK_PRESTART][0].timeout.value, 5);
    assert_int_equal(s->n_hooks[OCI_HOOK_POSTSTOP], 1);
    assert_false(s->hooks[OCI_HOOK_POSTSTOP][0].timeout.set);
    assert_int_equal(s->n_hooks[OCI_HOOK_CREATE_RUNTIME], 0);
    assert_string_equal(oci_spec_annotation(s, "io.container.manager"), "libpod");
    assert_null(oci_spec_annotation(s, "nope"));

    oci_linux_t *l = s->lnx;
    assert_int_equal(l->n_uid_mappings, 1);
    assert_int_equal(l->uid_mappings[0].host_id, 100000);
    assert_int_equal(l->gid_mappings[0].size, 65536);
    assert_int_equal(l->n_sysctl, 1);
    assert_string_equal(l->sysctl[0].key, "net.ipv4.ping_group_range");
    assert_int_equal(l->resources->pids_limit.value, 2048);
    assert_int_equal(l->resources->memory.limit.value, 536870912);
    assert_true(l->resources->memory.disable_oom_killer.set);
    assert_int_equal(l->resources->memory.disable_oom_killer.value, 0);
    assert_false(l->resources->memory.reservation.set);
    assert_int_equal(l->resources->cpu.shares.value, 512);
    assert_string_equal(l->resources->cpu.cpus, "0-1");
    assert_int_equal(l->resources->block_io.weight.value, 500);
    assert_string_equal(l->resources->hugepage_limits[0].page_size, "2MB");
    assert_string_equal(l->resources->unified[0].value, "400000000");
    assert_string_equal(l->cgroups_path, "machine.slice:libpod:a1b2c3");
    assert_int_equal(l->n_namespaces, 7);
    assert_string_equal(l->namespaces[1].path, "/run/netns/cni-1");
    assert_int_equal(l->devices[0].type, 'c');
    assert_int_equal(l->devices[0].minor, 229);
    assert_int_equal(l->devices[0].file_mode.value, 0666);
    oci_seccomp_t *sc = l->seccomp;
    assert_int_equal(sc->default_action, OCI_SCMP_ACT_ERRNO);
    assert_int_equal(sc->default_errno_ret.value, 38);
    assert_int_equal(sc->n_architectures, 3);
    assert_int_equal(sc->n_flags, 1);
    assert_int_equal(sc->n_syscalls, 4);
    assert_int_equal(sc->syscalls[0].n_names, 3);
    assert_int_equal(sc->syscalls[1].args[0].value, 4294967295u);
    assert_int_equal(sc->syscalls[2].args[0].op, OCI_SCMP_CMP_MASKED_EQ);
    assert_int_equal(sc->syscalls[3].action, OCI_SCMP_ACT_ERRNO);
    assert_int_equal(sc->syscalls[3].errno_ret.value, 1);
    assert_string_equal(l->rootfs_propagation, "rslave");
    assert_non_null(l->mount_label);
    oci_spec_destroy(&s);
}

static void test_oci_spec_minimal_without_process_or_linux(void **state)
{
    oci_spec_t *s = parse_ok("{ 'ociVersion': '1.0.0', 'root': { 'path': '/r' } }");
    assert_null(s->process);
    assert_null(s->lnx);
    assert_int_equal(s->n_mounts, 0);
    assert_null(oci_spec_annotation(s, "x"));
    oci_spec_destroy(&s);
}

static void test_oci_spec_required_fields(void **state)
{
    expect_error("{ 'root': { 'path': 'r' } }", "ociVersion: missing required field");
    expect_error("{ 'ociVersion': '1.0.2' }", "root: missing required field");
    expect_error("{ 'ociVersion': '1.0.2', 'root': {} }", "root.path: missing required field");
    expect_error("{ 'ociVersion': '1.0.2', 'root': { 'path': '' } }", "root.path: must not be");
    expect_error("{ 'ociVersion': '2.0.0', 'root': { 'path': 'r' } }",
                 "ociVersion: unsupported version");
    expect_error(MINIMAL_HEAD "'process': { 'args': ['sh'], 'cwd': '/' } }",
                 "process.user: missing required field");
    expect_error(MINIMAL_HEAD "'process': { 'user': {'uid':0,'gid':0}, 'cwd': '/' } }",
                 "process.args: missing required field");
    expect_error(MINIMAL_HEAD "'process': { 'user': {'uid':0,'gid':0}, 'args': [] , 'cwd': '/'} }",
                 "process.args: must not be empty");
    expect_error(MINIMAL_HEAD "'process': { 'user': {'uid':0,'gid':0}, 'args': ['sh'] } }",
                 "process.cwd: missing required field");
    expect_error(MINIMAL_HEAD PROC("{ 'uid': 0 }") "}", "process.user.gid: missing required field");
    expect_error(MINIMAL_HEAD "'mounts': [ { 'type': 'proc' } ] }",
                 "mounts[0].destination: missing required field");
    expect_error(MINIMAL_HEAD "'hooks': { 'poststart': [ { 'args': [] } ] } }",
                 "hooks.poststart[0].path: missing required field");
    expect_error(MINIMAL_HEAD "'linux': { 'namespaces': [ { 'path': '/x' } ] } }",
                 "linux.namespaces[0].type: missing required field");
    expect_error(MINIMAL_HEAD "'linux': { 'seccomp': { 'syscalls': [] } } }",
                 "linux.seccomp.defaultAction: missing required field");
    expect_error(MINIMAL_HEAD "'linux': { 'devices': [ { 'path': '/dev/x', 'type': 'c' } ] } }",
                 "linux.devices[0].major: missing required field");
    expect_error(MINIMAL_HEAD "'linux': { 'resources': { 'pids': {} } } }",
                 "linux.resources.pids.limit: missing required field");
}

static void test_oci_spec_wrong_types_name_the_path(void **state)
{
    expect_error("[]", "(document): expected object, got array");
    expect_error("{ 'ociVersion': 1, 'root': { 'path': 'r' } }",
                 "ociVersion: expected string, got integer");
    expect_error("{ 'ociVersion': '1.0.2', 'root': 'r' }", "root: expected object, got string");
    expect_error(MINIMAL_HEAD PROC("{ 'uid': '0', 'gid': 0 }") "}",
                 "process.user.uid: expected integer, got string");
    expect_error(MINIMAL_HEAD PROC("{ 'uid': -1, 'gid': 0 }") "}",
                 "process.user.uid: value -1 out of range");
    expect_error(MINIMAL_HEAD PROC("{ 'uid': 4294967296, 'gid': 0 }") "}",
                 "process.user.uid: value 4294967296 out of range");
    expect_error(MINIMAL_HEAD PROC("{ 'uid': 0, 'gid': 1.5 }") "}",
                 "process.user.gid: expected integer, got number");
    expect_error(MINIMAL_HEAD PROC("{ 'uid': 0, 'gid': 0, 'additionalGids': [1, 'x'] }") "}",
                 "process.user.additionalGids[1]: expected integer, got string");
    expect_error(MINIMAL_HEAD PROC("{ 'uid': 0, 'gid': 0, 'umask': 512 }") "}",
                 "process.user.umask: value 512 out of range");
    expect_error(MINIMAL_HEAD "'process': { 'user': {'uid':0,'gid':0}, 'args': ['sh', 3],"
                              " 'cwd': '/' } }",
                 "process.args[1]: expected string, got integer");
    expect_error(MINIMAL_HEAD "'process': { 'user': {'uid':0,'gid':0}, 'args': ['sh'],"
                              " 'cwd': 'rel' } }",
                 "process.cwd: must be an absolute path");
    expect_error(MINIMAL_HEAD "'process': { 'user': {'uid':0,'gid':0}, 'args': ['sh'],"
                              " 'cwd': '/', 'env': ['NOEQUALS'] } }",
                 "process.env[0]: expected KEY=VALUE");
    expect_error(MINIMAL_HEAD "'process': { 'user': {'uid':0,'gid':0}, 'args': ['sh'],"
                              " 'cwd': '/', 'terminal': 'yes' } }",
                 "process.terminal: expected boolean, got string");
    expect_error(MINIMAL_HEAD "'process': { 'user': {'uid':0,'gid':0}, 'args': ['sh'],"
                              " 'cwd': '/', 'capabilities': { 'effective': ['SYS_ADMIN'] } } }",
                 "process.capabilities.effective[0]: not a capability name");
    expect_error(MINIMAL_HEAD "'process': { 'user': {'uid':0,'gid':0}, 'args': ['sh'],"
                              " 'cwd': '/', 'rlimits': [ { 'type': 'RLIMIT_BOGUS', 'hard': 1,"
                              " 'soft': 1 } ] } }",
                 "process.rlimits[0].type: unknown rlimit");
    expect_error(MINIMAL_HEAD "'process': { 'user': {'uid':0,'gid':0}, 'args': ['sh'],"
                              " 'cwd': '/', 'rlimits': [ { 'type': 'RLIMIT_NOFILE', 'hard': 1,"
                              " 'soft': 2 } ] } }",
                 "process.rlimits[0].soft: greater than hard limit");
    expect_error(MINIMAL_HEAD "'process': { 'user': {'uid':0,'gid':0}, 'args': ['sh'],"
                              " 'cwd': '/', 'oomScoreAdj': 1001 } }",
                 "process.oomScoreAdj: value 1001 out of range");
    expect_error(MINIMAL_HEAD "'mounts': {} }", "mounts: expected array, got object");
    expect_error(MINIMAL_HEAD "'mounts': [ 'x' ] }", "mounts[0]: expected object, got string");
    expect_error(MINIMAL_HEAD "'mounts': [ { 'destination': '/a', 'options': 'ro' } ] }",
                 "mounts[0].options: expected array, got string");
    expect_error(MINIMAL_HEAD "'annotations': { 'a': 'b', 'c': 1 } }",
                 "annotations[\"c\"]: expected string, got integer");
    expect_error(MINIMAL_HEAD "'hooks': { 'prestart': [ { 'path': 'rel' } ] } }",
                 "hooks.prestart[0].path: must be an absolute path");
    expect_error(MINIMAL_HEAD "'hooks': { 'poststop': [ { 'path': '/x', 'timeout': 0 } ] } }",
                 "hooks.poststop[0].timeout: value 0 out of range");
    expect_error(MINIMAL_HEAD "'linux': { 'namespaces': [ { 'type': 'pid' }, { 'type': 'net' } ] "
                              "} }",
                 "linux.namespaces[1].type: unknown namespace type \"net\"");
    expect_error(MINIMAL_HEAD "'linux': { 'namespaces': [ { 'type': 'pid' }, { 'type': 'pid' } ] "
                              "} }",
                 "linux.namespaces[1]: duplicate namespace type \"pid\"");
    expect_error(MINIMAL_HEAD "'linux': { 'uidMappings': [ { 'containerID': 0, 'hostID': 0, "
                              "'size': 0 } ] } }",
                 "linux.uidMappings[0].size: must be greater than 0");
    expect_error(MINIMAL_HEAD "'linux': { 'devices': [ { 'path': '/dev/x', 'type': 'x' } ] } }",
                 "linux.devices[0].type: expected one of c, b, u, p");
    expect_error(MINIMAL_HEAD "'linux': { 'resources': { 'memory': { 'limit': 'lots' } } } }",
                 "linux.resources.memory.limit: expected integer, got string");
    expect_error(MINIMAL_HEAD "'linux': { 'resources': { 'devices': [ { 'allow': true, "
                              "'access': 'rwx' } ] } } }",
                 "linux.resources.devices[0].access: expected letters of \"rwm\"");
    expect_error(MINIMAL_HEAD "'linux': { 'resources': { 'unified': { '../x': '1' } } } }",
                 "linux.resources.unified[\"../x\"]: not a cgroup file name");
    expect_error(MINIMAL_HEAD "'linux': { 'sysctl': { 'kernel/../x': '1' } } }",
                 "linux.sysctl[\"kernel/../x\"]: not a sysctl name");
    expect_error(MINIMAL_HEAD "'linux': { 'seccomp': { 'defaultAction': 'SCMP_ACT_FOO' } } }",
                 "linux.seccomp.defaultAction: unknown action \"SCMP_ACT_FOO\"");
    expect_error(MINIMAL_HEAD "'linux': { 'seccomp': { 'defaultAction': 'SCMP_ACT_ALLOW', "
                              "'syscalls': [ { 'names': ['a'], 'action': 'SCMP_ACT_ALLOW' }, "
                              "{ 'names': ['b'], 'action': 'SCMP_ACT_ERRNO', 'args': [ "
                              "{ 'index': 0, 'value': 1, 'op': 'SCMP_CMP_XX' } ] } ] } } }",
                 "linux.seccomp.syscalls[1].args[0].op: unknown operator \"SCMP_CMP_XX\"");
    expect_error(MINIMAL_HEAD "'linux': { 'seccomp': { 'defaultAction': 'SCMP_ACT_ALLOW', "
                              "'syscalls': [ { 'names': ['a'], 'action': 'SCMP_ACT_ALLOW', "
                              "'args': [ { 'index': 6, 'value': 1, 'op': 'SCMP_CMP_EQ' } ] } ] } "
                              "} }",
                 "linux.seccomp.syscalls[0].args[0].index: value 6 out of range");
    expect_error(MINIMAL_HEAD "'linux': { 'seccomp': { 'defaultAction': 'SCMP_ACT_ALLOW', "
                              "'syscalls': [ { 'names': [], 'action': 'SCMP_ACT_ALLOW' } ] } } }",
                 "linux.seccomp.syscalls[0].names: must not be empty");
    expect_error(MINIMAL_HEAD "'linux': { 'rootfsPropagation': 'sideways' } }",
                 "linux.rootfsPropagation: unknown propagation");
    expect_error(MINIMAL_HEAD "'linux': { 'maskedPaths': [ '/ok', 'proc/kcore' ] } }",
                 "linux.maskedPaths[1]: must be an absolute path");
    expect_error(MINIMAL_HEAD "'linux': { 'personality': { 'domain': 'BSD' } } }",
                 "linux.personality.domain: expected LINUX or LINUX32");
}

static void test_oci_spec_traversal_refused(void **state)
{
    expect_error(MINIMAL_HEAD "'mounts': [ { 'destination': '/proc' }, { 'destination': "
                              "'/proc' }, { 'destination': 'tmp' } ] }",
                 "mounts[2].destination: must be an absolute path");
    expect_error(MINIMAL_HEAD "'mounts': [ { 'destination': '/a' }, { 'destination': "
                              "'/a/../../etc' } ] }",
                 "mounts[1].destination: must not contain \"..\" components");
    expect_error(MINIMAL_HEAD "'mounts': [ { 'destination': '/..' } ] }",
                 "mounts[0].destination: must not contain");
    expect_error(MINIMAL_HEAD "'linux': { 'readonlyPaths': [ '/proc/../etc' ] } }",
                 "linux.readonlyPaths[0]: must not contain");
    expect_error(MINIMAL_HEAD "'linux': { 'devices': [ { 'path': '/dev/../etc/x', 'type': 'p' } "
                              "] } }",
                 "linux.devices[0].path: must not contain");
    /* Names that merely contain dots are fine. */
    oci_spec_t *s = parse_ok(MINIMAL_HEAD "'mounts': [ { 'destination': '/a..b/..c/d..' } ] }");
    oci_spec_destroy(&s);
}

static void test_oci_spec_garbage_and_limits(void **state)
{
    oci_spec_t *spec = NULL;
    err_t err = ERR_INIT;
    const char *bad = "{ \"ociVersion\": ";
    assert_true(oci_spec_parse(bad, strlen(bad), &spec, &err) < 0);
    assert_non_null(strstr(err_str(&err), "invalid JSON at line 1"));
    err_clear(&err);

    const char *dup = "{ \"ociVersion\": \"1.0.0\", \"ociVersion\": \"1.0.1\", \"root\": {} }";
    assert_true(oci_spec_parse(dup, strlen(dup), &spec, &err) < 0);
    assert_non_null(strstr(err_str(&err), "duplicate"));
    err_clear(&err);

    const char *nul = "{ \"ociVersion\": \"1.0\\u0000x\", \"root\": { \"path\": \"r\" } }";
    assert_true(oci_spec_parse(nul, strlen(nul), &spec, &err) < 0);
    /* jansson refuses NUL escapes itself (no JSON_ALLOW_NUL). */
    assert_non_null(strstr(err_str(&err), "invalid JSON"));
    err_clear(&err);

    /* Not NUL-terminated input: len is honoured. */
    const char *ok = "{\"ociVersion\":\"1.0.0\",\"root\":{\"path\":\"r\"}}GARBAGE";
    assert_int_equal(oci_spec_parse(ok, strlen(ok) - 7, &spec, &err), 0);
    oci_spec_destroy(&spec);

    /* Too large a document. */
    size_t big = OCI_SPEC_MAX_BYTES + 1;
    char *huge = malloc(big);
    memset(huge, ' ', big);
    assert_int_equal(oci_spec_parse(huge, big, &spec, &err), -EFBIG);
    assert_non_null(strstr(err_str(&err), "too large"));
    err_clear(&err);
    free(huge);
}

static void test_oci_spec_huge_arrays_and_strings(void **state)
{
    /* 65537 env entries. */
    size_t n = OCI_SPEC_MAX_ITEMS + 1;
    size_t cap = n * 8 + 4096, len = 0;
    char *buf = malloc(cap);
    len += sprintf(buf, "{\"ociVersion\":\"1.0.2\",\"root\":{\"path\":\"r\"},\"process\":{\"user\":"
                        "{\"uid\":0,\"gid\":0},\"args\":[\"sh\"],\"cwd\":\"/\",\"env\":[");
    for (size_t i = 0; i < n; i++)
        len += sprintf(buf + len, "%s\"A=1\"", i ? "," : "");
    len += sprintf(buf + len, "]}}");
    oci_spec_t *spec = NULL;
    err_t err = ERR_INIT;
    assert_true(oci_spec_parse(buf, len, &spec, &err) < 0);
    assert_string_equal(err_str(&err), "process.env: too many entries (65537, limit 65536)");
    err_clear(&err);
    free(buf);

    /* 65537 mounts. */
    cap = n * 24 + 4096;
    len = 0;
    buf = malloc(cap);
    len += sprintf(buf, "{\"ociVersion\":\"1.0.2\",\"root\":{\"path\":\"r\"},\"mounts\":[");
    for (size_t i = 0; i < n; i++)
        len += sprintf(buf + len, "%s{\"destination\":\"/\"}", i ? "," : "");
    len += sprintf(buf + len, "]}");
    assert_true(oci_spec_parse(buf, len, &spec, &err) < 0);
    assert_string_equal(err_str(&err), "mounts: too many entries (65537, limit 65536)");
    err_clear(&err);
    free(buf);

    /* A 1 MiB + 1 string. */
    size_t sl = OCI_SPEC_MAX_STRING + 1;
    buf = malloc(sl + 256);
    len =
        (size_t)sprintf(buf, "{\"ociVersion\":\"1.0.2\",\"root\":{\"path\":\"r\"},\"hostname\":\"");
    memset(buf + len, 'h', sl);
    len += sl;
    len += (size_t)sprintf(buf + len, "\"}");
    assert_true(oci_spec_parse(buf, len, &spec, &err) < 0);
    assert_string_equal(err_str(&err), "hostname: string too long (1048577 bytes, limit 1048576)");
    err_clear(&err);
    free(buf);
}

static void test_oci_spec_roundtrip_keeps_unknown_and_amendments(void **state)
{
    oci_spec_t *s = parse_ok(podman_spec);
    err_t err = ERR_INIT;
    char *json = NULL;
    size_t len = 0;

    /* Amend as the runtime does before sending the spec to the guest. */
    free(s->root_path);
    s->root_path = strdup("/run/husk/c1/rootfs");
    oci_mounts_free(s->mounts, s->n_mounts);
    s->mounts = calloc(1, sizeof(*s->mounts));
    s->n_mounts = 1;
    s->mounts[0].destination = strdup("/data");
    s->mounts[0].type = strdup("virtiofs");
    s->mounts[0].options = calloc(1, sizeof(char *));
    s->lnx->resources->pids_limit.set = false;

    assert_int_equal(oci_spec_to_json(s, &json, &len, &err), 0);
    assert_int_equal(strlen(json), len);
    assert_non_null(strstr(json, "\"x-top-level-extension\":42"));
    assert_non_null(strstr(json, "\"x-podman-extension\":{\"keep\":\"me\"}"));
    assert_null(strstr(json, "\"pids\""));

    oci_spec_t *s2 = NULL;
    assert_int_equal(oci_spec_parse(json, len, &s2, &err), 0);
    assert_string_equal(s2->root_path, "/run/husk/c1/rootfs");
    assert_int_equal(s2->n_mounts, 1);
    assert_string_equal(s2->mounts[0].type, "virtiofs");
    assert_null(s2->mounts[0].source);
    assert_false(s2->lnx->resources->pids_limit.set);
    assert_int_equal(s2->lnx->resources->memory.limit.value, 536870912);
    assert_int_equal(s2->process->user.n_additional_gids, 2);
    assert_int_equal(s2->process->user.umask.value, 18);
    assert_int_equal(s2->process->io_priority, 4);
    assert_int_equal(s2->lnx->seccomp->n_syscalls, 4);
    assert_int_equal(s2->lnx->seccomp->syscalls[2].args[0].value, 2114060288);
    assert_int_equal(s2->lnx->seccomp->syscalls[3].errno_ret.value, 1);
    assert_int_equal(s2->lnx->seccomp->default_errno_ret.value, 38);
    assert_string_equal(s2->lnx->namespaces[1].path, "/run/netns/cni-1");
    assert_int_equal(s2->lnx->devices[0].file_mode.value, 0666);
    assert_int_equal(s2->n_hooks[OCI_HOOK_PRESTART], 1);
    assert_string_equal(oci_spec_annotation(s2, "org.opencontainers.image.stopSignal"), "15");
    assert_string_equal(s2->lnx->sysctl[0].value, "0 0");

    /* Re-serializing the reparsed spec is stable. */
    char *json2 = NULL;
    assert_int_equal(oci_spec_to_json(s2, &json2, NULL, &err), 0);
    assert_string_equal(json, json2);
    free(json);
    free(json2);
    oci_spec_destroy(&s2);

    /* The runc default round-trips too (removing linux entirely). */
    oci_spec_t *r = parse_ok(runc_spec);
    assert_int_equal(oci_spec_to_json(r, &json, NULL, &err), 0);
    oci_spec_t *r2 = NULL;
    assert_int_equal(oci_spec_parse(json, strlen(json), &r2, &err), 0);
    assert_int_equal(r2->n_mounts, 7);
    assert_int_equal(r2->process->n_caps[OCI_CAP_PERMITTED], 3);
    assert_true(r2->root_readonly);
    free(json);
    oci_spec_destroy(&r2);
    oci_spec_destroy(&r);
    oci_spec_destroy(&s);
}

static oci_spec_t *with_annotations(const char *ann)
{
    char doc[1024];
    snprintf(doc, sizeof(doc), MINIMAL_HEAD "'annotations': { %s } }", ann);
    return parse_ok(doc);
}

static void test_oci_spec_cri_info(void **state)
{
    enum oci_cri_kind kind;
    const char *id;
    err_t err = ERR_INIT;

    oci_spec_t *s = with_annotations("'x': 'y'");
    assert_int_equal(oci_spec_cri_info(s, &kind, &id, &err), 0);
    assert_int_equal(kind, OCI_CRI_SANDBOX);
    assert_null(id);
    oci_spec_destroy(&s);

    s = with_annotations("'io.kubernetes.cri.container-type': 'container',"
                         "'io.kubernetes.cri.sandbox-id': 'pod1'");
    assert_int_equal(oci_spec_cri_info(s, &kind, &id, &err), 0);
    assert_int_equal(kind, OCI_CRI_CONTAINER);
    assert_string_equal(id, "pod1");
    oci_spec_destroy(&s);

    s = with_annotations("'io.kubernetes.cri.container-type': 'sandbox',"
                         "'io.kubernetes.cri.sandbox-id': 'pod1'");
    assert_int_equal(oci_spec_cri_info(s, &kind, &id, &err), 0);
    assert_int_equal(kind, OCI_CRI_SANDBOX);
    assert_string_equal(id, "pod1");
    oci_spec_destroy(&s);

    /* CRI-O wins over containerd keys. */
    s = with_annotations("'io.kubernetes.cri-o.ContainerType': 'container',"
                         "'io.kubernetes.cri-o.SandboxID': 'crio-pod',"
                         "'io.kubernetes.cri.container-type': 'sandbox'");
    assert_int_equal(oci_spec_cri_info(s, &kind, &id, &err), 0);
    assert_int_equal(kind, OCI_CRI_CONTAINER);
    assert_string_equal(id, "crio-pod");
    oci_spec_destroy(&s);

    s = with_annotations("'io.kubernetes.cri-o.ContainerType': 'container'");
    assert_int_equal(oci_spec_cri_info(s, &kind, &id, &err), -EINVAL);
    assert_non_null(strstr(err_str(&err), "io.kubernetes.cri-o.SandboxID"));
    err_clear(&err);
    oci_spec_destroy(&s);

    s = with_annotations("'io.kubernetes.cri.container-type': 'pod'");
    assert_int_equal(oci_spec_cri_info(s, &kind, &id, &err), -EINVAL);
    assert_string_equal(err_str(&err), "annotations[\"io.kubernetes.cri.container-type\"]: "
                                       "unknown container type \"pod\"");
    err_clear(&err);
    oci_spec_destroy(&s);

    s = with_annotations("'io.kubernetes.docker.type': 'podsandbox'");
    assert_int_equal(oci_spec_cri_info(s, &kind, &id, &err), 0);
    assert_int_equal(kind, OCI_CRI_SANDBOX);
    oci_spec_destroy(&s);
}

static void test_oci_process_standalone(void **state)
{
    char *json = q("{ 'terminal': true, 'user': { 'uid': 5, 'gid': 6 }, 'args': [ 'ps', 'aux' ],"
                   "  'env': [ 'A=b' ], 'cwd': '/tmp', 'noNewPrivileges': true,"
                   "  'capabilities': { 'bounding': [ 'CAP_KILL' ] } }");
    oci_process_t *p = NULL;
    err_t err = ERR_INIT;
    assert_int_equal(oci_process_parse(json, strlen(json), &p, &err), 0);
    free(json);
    assert_true(p->terminal);
    assert_int_equal(p->user.gid, 6);
    assert_string_equal(p->args[1], "aux");
    assert_string_equal(p->cwd, "/tmp");
    assert_int_equal(p->n_caps[OCI_CAP_BOUNDING], 1);

    char *out = NULL;
    assert_int_equal(oci_process_to_json(p, &out, NULL, &err), 0);
    oci_process_t *p2 = NULL;
    assert_int_equal(oci_process_parse(out, strlen(out), &p2, &err), 0);
    assert_string_equal(p2->args[0], "ps");
    assert_true(p2->no_new_privileges);
    free(out);
    oci_process_destroy(&p2);
    oci_process_destroy(&p);
    assert_null(p);

    json = q("{ 'user': { 'uid': 'root', 'gid': 0 }, 'args': [ 'sh' ], 'cwd': '/' }");
    assert_true(oci_process_parse(json, strlen(json), &p, &err) < 0);
    assert_string_equal(err_str(&err), "user.uid: expected integer, got string");
    err_clear(&err);
    free(json);
}

static void test_oci_spec_load_file(void **state)
{
    char path[] = "/tmp/husk-test-spec-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    char *json = q(runc_spec);
    assert_int_equal(write(fd, json, strlen(json)), (ssize_t)strlen(json));
    close(fd);
    free(json);

    oci_spec_t *s = NULL;
    err_t err = ERR_INIT;
    assert_int_equal(oci_spec_load(path, &s, &err), 0);
    assert_int_equal(s->n_mounts, 7);
    oci_spec_destroy(&s);

    /* A parse error is prefixed with the file name. */
    fd = open(path, O_WRONLY | O_TRUNC);
    assert_int_equal(write(fd, "{\"ociVersion\":1}", 16), 16);
    close(fd);
    assert_true(oci_spec_load(path, &s, &err) < 0);
    char want[128];
    snprintf(want, sizeof(want), "%s: ociVersion: expected string, got integer", path);
    assert_string_equal(err_str(&err), want);
    unlink(path);

    assert_int_equal(oci_spec_load(path, &s, &err), -ENOENT);
    assert_non_null(strstr(err_str(&err), path));
    err_clear(&err);

    assert_int_equal(oci_spec_load("/tmp", &s, &err), -EINVAL);
    assert_non_null(strstr(err_str(&err), "not a regular file"));
    err_clear(&err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_oci_spec_runc_default_parses),
        cmocka_unit_test(test_oci_spec_podman_like_parses),
        cmocka_unit_test(test_oci_spec_minimal_without_process_or_linux),
        cmocka_unit_test(test_oci_spec_required_fields),
        cmocka_unit_test(test_oci_spec_wrong_types_name_the_path),
        cmocka_unit_test(test_oci_spec_traversal_refused),
        cmocka_unit_test(test_oci_spec_garbage_and_limits),
        cmocka_unit_test(test_oci_spec_huge_arrays_and_strings),
        cmocka_unit_test(test_oci_spec_roundtrip_keeps_unknown_and_amendments),
        cmocka_unit_test(test_oci_spec_cri_info),
        cmocka_unit_test(test_oci_process_standalone),
        cmocka_unit_test(test_oci_spec_load_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
