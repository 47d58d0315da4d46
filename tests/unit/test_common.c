/* err, log and fault-rule grammar. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "bus/faults.h"
#include "common/err.h"
#include "common/log.h"
#include "common/xalloc.h"

static void test_err_make_wrap_and_clear(void **s)
{
    err_t err = ERR_INIT;
    assert_int_equal(err_make(&err, EINVAL, "bad %s", "thing"), -EINVAL);
    assert_string_equal(err_str(&err), "bad thing");
    assert_int_equal(err_wrap(&err, "start vm '%s'", "p1"), -EINVAL);
    assert_string_equal(err_str(&err), "start vm 'p1': bad thing");
    err_t other = ERR_INIT;
    err_move(&other, &err);
    assert_null(err.msg);
    assert_int_equal(other.code, EINVAL);
    err_clear(&other);
    assert_null(other.msg);
    assert_string_equal(err_str(&other), "unknown error");
    errno = ENOENT;
    assert_int_equal(err_errno(&err, "open %s", "/x"), -ENOENT);
    assert_string_equal(err_str(&err), "open /x: No such file or directory");
    err_clear(&err);
    assert_int_equal(err_make(NULL, 0, "x"), -EIO); /* code 0 becomes EIO */
    assert_int_equal(err_make(&err, -EPERM, "neg"), -EPERM);
    err_clear(&err);
}

static char *capture(enum log_format fmt, void (*fn)(void))
{
    char path[] = "/tmp/husk-log-XXXXXX";
    int fd = mkstemp(path);
    log_setup(fd, fmt, LOG_DEBUG);
    fn();
    log_setup(2, LOG_FMT_LOGFMT, LOG_ERROR);
    lseek(fd, 0, SEEK_SET);
    static char buf[8192];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = 0;
    close(fd);
    unlink(path);
    return buf;
}

static void emit(void)
{
    log_set_component("runtime");
    log_set_sandbox("p1");
    log_set_container("c1");
    log_info("hello \"world\" a=b");
    log_debug("plain");
    assert_int_equal(log_error_errno(EACCES, "open %s", "/etc/x"), -EACCES);
    log_set_container(NULL);
    log_set_sandbox(NULL);
    log_set_component(NULL);
    log_warn("no ids");
}

static void test_log_logfmt_fields_and_quoting(void **s)
{
    char *out = capture(LOG_FMT_LOGFMT, emit);
    assert_non_null(strstr(out, "level=info component=husk.runtime sandbox=p1 container=c1 "
                                "msg=\"hello \\\"world\\\" a=b\"\n"));
    assert_non_null(
        strstr(out, "level=debug component=husk.runtime sandbox=p1 container=c1 msg=plain\n"));
    assert_non_null(strstr(out, "level=error component=husk.runtime sandbox=p1 container=c1 "
                                "msg=\"open /etc/x: Permission denied\""));
    assert_non_null(strstr(out, "level=warning component=husk msg=\"no ids\""));
    assert_non_null(strstr(out, "time=20"));
}

static void test_log_json_lines(void **s)
{
    char *out = capture(LOG_FMT_JSON, emit);
    assert_non_null(strstr(out,
                           "\"level\":\"info\",\"component\":\"husk.runtime\",\"sandbox\":"
                           "\"p1\",\"container\":\"c1\",\"msg\":\"hello \\\"world\\\" a=b\"}\n"));
    assert_non_null(strstr(out, "{\"time\":\"20"));
}

static void quiet(void)
{
    log_setup(1000, LOG_FMT_LOGFMT, LOG_WARN); /* below the level: nothing written */
    log_info("x");
}

static void test_log_level_filter_and_parsers(void **s)
{
    capture(LOG_FMT_LOGFMT, quiet);
    assert_int_equal(log_level_parse("debug"), LOG_DEBUG);
    assert_int_equal(log_level_parse("warning"), LOG_WARN);
    assert_int_equal(log_level_parse("error"), LOG_ERROR);
    assert_int_equal(log_level_parse("off"), LOG_OFF);
    assert_int_equal(log_level_parse("info"), LOG_INFO);
    assert_int_equal(log_level_parse("loud"), -1);
    assert_int_equal(log_level_parse(NULL), -1);
    assert_int_equal(log_format_parse("text"), LOG_FMT_LOGFMT);
    assert_int_equal(log_format_parse("json"), LOG_FMT_JSON);
    assert_int_equal(log_format_parse("xml"), -1);
    assert_int_equal(log_format_parse(NULL), -1);
    log_setup(2, LOG_FMT_LOGFMT, LOG_ERROR);
    assert_int_equal(log_get_level(), LOG_ERROR);
}

static void test_xalloc_zero_sizes_null_and_format(void **s)
{
    (void)s;
    void *a = xmalloc(0), *b = xcalloc(0, 0);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(*(char *)b, 0);
    free(a);
    free(b);
    assert_null(xstrdup(NULL));
    char *d = xstrdup("husk");
    assert_string_equal(d, "husk");
    free(d);
    char *f = xasprintf("%s-%d", "sb", 42);
    assert_string_equal(f, "sb-42");
    free(f);
}

static void test_faults_grammar_accepts_and_canonicalizes(void **s)
{
    faults_t *f = faults_new();
    err_t err = ERR_INIT;
    assert_int_equal(
        faults_add(f,
                   "delay:200 type=agent.* count=3; drop to=hypervisor prob=0.5 seed=4;"
                   " duplicate:2,from=runtime ; corrupt",
                   &err),
        0);
    assert_int_equal(faults_count(f), 4);
    assert_string_equal(faults_rule_text(f, 0), "delay:200 type=agent.* from=* to=* count=3");
    assert_string_equal(faults_rule_text(f, 1), "drop type=* from=* to=hypervisor prob=0.5");
    assert_string_equal(faults_rule_text(f, 2), "duplicate:2 type=* from=runtime to=*");
    assert_string_equal(faults_rule_text(f, 3), "corrupt:1 type=* from=* to=*");
    assert_null(faults_rule_text(f, 9));
    fault_hit_t h = faults_match(f, "agent.exec", "runtime", "agent");
    assert_int_equal(h.action, FAULT_DELAY);
    assert_int_equal(h.param, 200);
    /* bus.* messages are left alone unless a rule names them */
    h = faults_match(f, "bus.ping", "bus", "x");
    assert_int_equal(h.action, FAULT_NONE);
    faults_clear(f);
    assert_int_equal(faults_count(f), 0);
    assert_int_equal(faults_add(f, "drop type=bus.ping", &err), 0);
    assert_int_equal(faults_match(f, "bus.ping", "bus", "x").action, FAULT_DROP);
    assert_int_equal(faults_rule_hits(f, 0), 1);
    assert_string_equal(fault_action_name(FAULT_CORRUPT), "corrupt");
    uint8_t env[] = {0x81, 0xa4, 'b', 'o', 'd', 'y', 0x81, 0xa1, 'x', 0x01};
    uint8_t copy[sizeof env];
    memcpy(copy, env, sizeof env);
    faults_corrupt(f, 0, copy, sizeof copy, 2);
    assert_memory_equal(copy, env, 6); /* header untouched, body changed */
    assert_memory_not_equal(copy + 6, env + 6, 4);
    faults_destroy(&f);
    assert_null(f);
}

/* skip=N lets the first N matching messages through: "the second
 * agent.pid" (an exec's answer, after the create's). */
static void test_faults_skip_lets_the_first_matches_pass(void **s)
{
    faults_t *f = faults_new();
    err_t err = ERR_INIT;
    assert_int_equal(faults_add(f, "drop type=agent.pid to=runtime skip=1 count=1", &err), 0);
    assert_string_equal(faults_rule_text(f, 0),
                        "drop type=agent.pid from=* to=runtime count=1 skip=1");
    assert_int_equal(faults_match(f, "agent.ok", "agent", "runtime").action, FAULT_NONE);
    assert_int_equal(faults_match(f, "agent.pid", "agent", "runtime").action, FAULT_NONE);
    assert_int_equal(faults_match(f, "agent.pid", "agent", "runtime").action, FAULT_DROP);
    assert_int_equal(faults_match(f, "agent.pid", "agent", "runtime").action, FAULT_NONE);
    assert_int_equal(faults_rule_hits(f, 0), 1);
    faults_destroy(&f);
}

static void test_faults_grammar_rejects_with_reasons(void **s)
{
    struct {
        const char *rule, *msg;
    } bad[] = {
        {"explode", "fault rule 1: unknown action 'explode'"},
        {"delay", "delay needs a duration in ms"},
        {"delay:0", "must be an integer 1..3600000"},
        {"delay:abc", "must be an integer 1..3600000"},
        {"drop:3", "drop takes no argument"},
        {"drop count=0", "count: '0' is not a positive integer"},
        {"drop prob=1.5", "prob: '1.5' is not a number in [0,1]"},
        {"drop color=red", "unknown key 'color'"},
        {"drop type", "'type': expected key=value"},
        {"drop; delay:x", "fault rule 2"},
        {"duplicate:1000", "at most 100 copies"},
        {"drop seed=-1", "seed: '-1' is not an integer"},
        {"drop skip=x", "skip: 'x' is not an integer"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        faults_t *f = faults_new();
        err_t err = ERR_INIT;
        assert_true(faults_add(f, bad[i].rule, &err) < 0);
        if (!strstr(err_str(&err), bad[i].msg))
            fail_msg("'%s': got '%s', want '%s'", bad[i].rule, err_str(&err), bad[i].msg);
        assert_int_equal(faults_count(f), 0); /* nothing half-added */
        err_clear(&err);
        faults_destroy(&f);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_err_make_wrap_and_clear),
        cmocka_unit_test(test_log_logfmt_fields_and_quoting),
        cmocka_unit_test(test_log_json_lines),
        cmocka_unit_test(test_log_level_filter_and_parsers),
        cmocka_unit_test(test_xalloc_zero_sizes_null_and_format),
        cmocka_unit_test(test_faults_grammar_accepts_and_canonicalizes),
        cmocka_unit_test(test_faults_grammar_rejects_with_reasons),
        cmocka_unit_test(test_faults_skip_lets_the_first_matches_pass),
    };
    return cmocka_run_group_tests_name("common", tests, NULL, NULL);
}
