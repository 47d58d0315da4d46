/* Unit tests for agent/guest/net: the agent's interface, route and
 * neighbour configuration, run in a private network namespace that each
 * test makes (unshare(CLONE_NEWNET)) and leaves (setns back; the namespace
 * and its links go with its last reference).  The links are a veth pair
 * created here over netlink with known MACs, as a hotplugged NIC appears
 * in the guest. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <net/if.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <libmnl/libmnl.h>

#include "agent/guest/net.h"
#include "common/log.h"
#include "resources/net.h"
#include "resources/netlink.h"

#define MAC_A "0a:58:0a:63:00:02"
#define MAC_B "0a:58:0a:63:00:03"
#define MAC_PEER_A "0a:58:0a:63:00:f2"
#define MAC_PEER_B "0a:58:0a:63:00:f3"

static int orig_netns = -1;

/* Creates the veth pair name <-> peer with the given MACs. */
static void veth_add(const char *name, const char *mac, const char *peer, const char *peer_mac)
{
    char buf[RES_NL_BUF];
    uint8_t m[6], pm[6];
    assert_int_equal(res_nl_mac_parse(mac, m), 0);
    assert_int_equal(res_nl_mac_parse(peer_mac, pm), 0);
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = RTM_NEWLINK;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL;
    struct ifinfomsg *ifi = mnl_nlmsg_put_extra_header(nlh, sizeof *ifi);
    ifi->ifi_family = AF_UNSPEC;
    mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
    mnl_attr_put(nlh, IFLA_ADDRESS, 6, m);
    struct nlattr *info = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
    mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "veth");
    struct nlattr *data = mnl_attr_nest_start(nlh, IFLA_INFO_DATA);
    struct nlattr *pe = mnl_attr_nest_start(nlh, VETH_INFO_PEER);
    struct ifinfomsg *pifi = mnl_nlmsg_put_extra_header(nlh, sizeof *pifi);
    pifi->ifi_family = AF_UNSPEC;
    mnl_attr_put_strz(nlh, IFLA_IFNAME, peer);
    mnl_attr_put(nlh, IFLA_ADDRESS, 6, pm);
    mnl_attr_nest_end(nlh, pe);
    mnl_attr_nest_end(nlh, data);
    mnl_attr_nest_end(nlh, info);
    res_nl_t *nl = NULL;
    err_t err = ERR_INIT;
    int r = res_nl_open(&nl, &err);
    if (r == 0)
        r = res_nl_talk(nl, nlh, NULL, NULL, "add a veth pair", &err);
    if (r == 0)
        r = res_nl_talk(nl, res_nl_link_set(buf, (int)if_nametoindex(peer), NULL, 0, true, true),
                        NULL, NULL, "set the peer up", &err);
    res_nl_close(&nl);
    if (r < 0)
        fail_msg("%s", err_str(&err));
}

static int setup(void **state)
{
    (void)state;
    log_setup(2, LOG_FMT_LOGFMT, LOG_OFF);
    orig_netns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (orig_netns < 0 || unshare(CLONE_NEWNET) < 0) {
        fprintf(stderr, "unshare(CLONE_NEWNET): %s\n", strerror(errno));
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    int r = setns(orig_netns, CLONE_NEWNET);
    close(orig_netns);
    orig_netns = -1;
    return r;
}

/* The interface named name in agent_net_list_interfaces, or NULL. */
static json_t *listed_iface(const char *name)
{
    char *s = NULL;
    err_t err = ERR_INIT;
    if (agent_net_list_interfaces(&s, &err) < 0)
        fail_msg("%s", err_str(&err));
    json_t *a = json_loads(s, 0, NULL);
    free(s);
    assert_non_null(a);
    json_t *found = NULL;
    size_t i;
    json_t *o;
    json_array_foreach(a, i, o)
    {
        if (!strcmp(json_string_value(json_object_get(o, "name")), name))
            found = json_incref(o);
    }
    json_decref(a);
    return found;
}

static bool is_up(const char *name)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr = {0};
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", name);
    int r = fd >= 0 ? ioctl(fd, SIOCGIFFLAGS, &ifr) : -1;
    if (fd >= 0)
        close(fd);
    return r == 0 && (ifr.ifr_flags & IFF_UP);
}

static void assert_addresses(json_t *iface, const char *const *want, size_t n)
{
    json_t *a = json_object_get(iface, "addresses");
    char *dump = json_dumps(a, JSON_COMPACT);
    if (json_array_size(a) != n)
        fail_msg("addresses %s, want %zu", dump, n);
    for (size_t k = 0; k < n; k++) {
        bool seen = false;
        for (size_t i = 0; i < json_array_size(a); i++)
            seen |= !strcmp(json_string_value(json_array_get(a, i)), want[k]);
        if (!seen)
            fail_msg("addresses %s lack %s", dump, want[k]);
    }
    free(dump);
}

/* The link with the MAC is renamed, sized, addressed (both families) and
 * brought up; a second update leaves exactly the new addresses. */
static void test_net_update_interface_configures_the_link(void **state)
{
    (void)state;
    veth_add("v0", MAC_A, "p0", MAC_PEER_A);
    int index = (int)if_nametoindex("v0");
    assert_true(index > 0);
    assert_false(is_up("v0"));

    char *out = NULL;
    err_t err = ERR_INIT;
    const char *body = "{\"name\":\"eth0\",\"mac\":\"" MAC_A "\",\"mtu\":1400,"
                       "\"addresses\":[\"10.99.0.2/24\",\"fd00:99::2/64\"]}";
    if (agent_net_update_interface(body, &out, &err) < 0)
        fail_msg("%s", err_str(&err));
    assert_non_null(out);
    json_t *echo = json_loads(out, 0, NULL), *sent = json_loads(body, 0, NULL);
    assert_true(json_equal(echo, sent));
    json_decref(echo);
    json_decref(sent);
    free(out);
    assert_int_equal((int)if_nametoindex("eth0"), index);
    assert_int_equal(if_nametoindex("v0"), 0);
    assert_true(is_up("eth0"));
    json_t *j = listed_iface("eth0");
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "mac")), MAC_A);
    assert_int_equal(json_integer_value(json_object_get(j, "mtu")), 1400);
    const char *first[] = {"10.99.0.2/24", "fd00:99::2/64"};
    assert_addresses(j, first, 2);
    json_decref(j);
    /* lo is not listed */
    assert_null(listed_iface("lo"));

    /* again, same name: old addresses go, new ones come, MTU kept */
    body = "{\"name\":\"eth0\",\"mac\":\"" MAC_A "\",\"addresses\":[\"10.98.0.7/16\"]}";
    if (agent_net_update_interface(body, NULL, &err) < 0)
        fail_msg("%s", err_str(&err));
    j = listed_iface("eth0");
    assert_int_equal(json_integer_value(json_object_get(j, "mtu")), 1400);
    const char *second[] = {"10.98.0.7/16"};
    assert_addresses(j, second, 1);
    json_decref(j);
    assert_true(is_up("eth0"));
}

/* A link that holds the wanted name is moved aside, not clobbered. */
static void test_net_update_interface_moves_a_name_holder_aside(void **state)
{
    (void)state;
    veth_add("eth0", MAC_A, "p0", MAC_PEER_A);
    veth_add("v1", MAC_B, "p1", MAC_PEER_B);
    int holder = (int)if_nametoindex("eth0"), target = (int)if_nametoindex("v1");
    err_t err = ERR_INIT;
    if (agent_net_update_interface("{\"name\":\"eth0\",\"mac\":\"" MAC_B "\"}", NULL, &err) < 0)
        fail_msg("%s", err_str(&err));
    assert_int_equal((int)if_nametoindex("eth0"), target);
    char aside[IF_NAMESIZE + 8];
    snprintf(aside, sizeof aside, "husk%d", holder);
    assert_int_equal((int)if_nametoindex(aside), holder);
    assert_true(is_up("eth0"));
}

/* No link with the MAC yet: EAGAIN, which the caller retries on. */
static void test_net_update_interface_unknown_mac_is_eagain(void **state)
{
    (void)state;
    err_t err = ERR_INIT;
    assert_int_equal(
        agent_net_update_interface("{\"name\":\"eth0\",\"mac\":\"0a:58:0a:63:00:99\"}", NULL, &err),
        -EAGAIN);
    assert_int_equal(err.code, EAGAIN);
    assert_non_null(strstr(err_str(&err), "0a:58:0a:63:00:99"));
    err_clear(&err);
}

/* What the host sends is checked before anything is touched. */
static void test_net_update_interface_rejects_bad_bodies(void **state)
{
    (void)state;
    veth_add("v0", MAC_A, "p0", MAC_PEER_A);
    char many[64 * 20 + 128];
    int off = snprintf(many, sizeof many, "{\"name\":\"eth0\",\"mac\":\"" MAC_A "\",\"addresses\":[");
    for (int i = 0; i < 65; i++)
        off += snprintf(many + off, sizeof many - (size_t)off, "%s\"10.0.%d.1/24\"", i ? "," : "", i);
    snprintf(many + off, sizeof many - (size_t)off, "]}");
    struct {
        const char *body;
        int code;
        const char *says;
    } cases[] = {
        {"{", EINVAL, "interface"},
        {NULL, EINVAL, "interface"},
        {"[]", EINVAL, "not a JSON object"},
        {"{\"mac\":\"" MAC_A "\"}", EINVAL, "interface.name"},
        {"{\"name\":\"../x\",\"mac\":\"" MAC_A "\"}", EINVAL, "interface.name"},
        {"{\"name\":\"a-very-long-name-0\",\"mac\":\"" MAC_A "\"}", EINVAL, "interface.name"},
        {"{\"name\":\"..\",\"mac\":\"" MAC_A "\"}", EINVAL, "interface.name"},
        {"{\"name\":\"eth0\",\"mac\":\"0a:58\"}", EINVAL, "interface.mac"},
        {"{\"name\":\"eth0\",\"mac\":\"" MAC_A "\",\"mtu\":67}", EINVAL, "interface.mtu"},
        {"{\"name\":\"eth0\",\"mac\":\"" MAC_A "\",\"mtu\":65536}", EINVAL, "interface.mtu"},
        {"{\"name\":\"eth0\",\"mac\":\"" MAC_A "\",\"mtu\":\"big\"}", EINVAL, "interface.mtu"},
        {"{\"name\":\"eth0\",\"mac\":\"" MAC_A "\",\"addresses\":\"10.0.0.1/8\"}", EINVAL,
         "not an array"},
        {many, E2BIG, "more than 64"},
        {"{\"name\":\"eth0\",\"mac\":\"" MAC_A "\",\"addresses\":[\"10.0.0.1\"]}", EINVAL,
         "addresses[0]"},
        {"{\"name\":\"eth0\",\"mac\":\"" MAC_A "\",\"addresses\":[\"10.0.0.1/24\",\"10.0.0.1/33\"]}",
         EINVAL, "addresses[1]"},
        {"{\"name\":\"eth0\",\"mac\":\"" MAC_A "\",\"addresses\":[\"fd00::1/129\"]}", EINVAL,
         "addresses[0]"},
        {"{\"name\":\"eth0\",\"mac\":\"" MAC_A "\",\"addresses\":[\"10.0.0.1/\"]}", EINVAL,
         "addresses[0]"},
        {"{\"name\":\"eth0\",\"mac\":\"" MAC_A "\",\"addresses\":[\"10.0.0.300/8\"]}", EINVAL,
         "addresses[0]"},
        {"{\"name\":\"eth0\",\"mac\":\"" MAC_A "\",\"addresses\":[7]}", EINVAL, "addresses[0]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        err_t err = ERR_INIT;
        char *out = NULL;
        int r = agent_net_update_interface(cases[i].body, &out, &err);
        if (r >= 0 || err.code != cases[i].code || !strstr(err_str(&err), cases[i].says))
            fail_msg("case %zu: r %d, code %d, \"%s\": want %d and \"%s\"", i, r, err.code,
                     err_str(&err), cases[i].code, cases[i].says);
        assert_null(out);
        err_clear(&err);
    }
    /* nothing was touched */
    assert_true(if_nametoindex("v0") > 0);
    assert_false(is_up("v0"));
}

static void configure_eth0(void)
{
    veth_add("v0", MAC_A, "p0", MAC_PEER_A);
    err_t err = ERR_INIT;
    if (agent_net_update_interface("{\"name\":\"eth0\",\"mac\":\"" MAC_A
                                   "\",\"addresses\":[\"10.99.0.2/24\",\"fd00:99::2/64\"]}",
                                   NULL, &err) < 0)
        fail_msg("%s", err_str(&err));
}

static bool has_route(json_t *routes, const char *dest, const char *gw, const char *dev,
                      json_int_t metric)
{
    size_t i;
    json_t *o;
    json_array_foreach(routes, i, o)
    {
        const char *d = json_string_value(json_object_get(o, "dest"));
        const char *g = json_string_value(json_object_get(o, "gateway"));
        const char *v = json_string_value(json_object_get(o, "device"));
        if (d && !strcmp(d, dest) && (!gw || (g && !strcmp(g, gw))) &&
            (!dev || (v && !strcmp(v, dev))) &&
            (!metric || json_integer_value(json_object_get(o, "metric")) == metric))
            return true;
    }
    return false;
}

/* Routes of both families, with and without a device, in order (the
 * default route after the one that makes its gateway reachable). */
static void test_net_update_routes_adds_them(void **state)
{
    (void)state;
    configure_eth0();
    err_t err = ERR_INIT;
    const char *routes = "["
                         "{\"dest\":\"10.1.0.0/16\",\"gateway\":\"10.99.0.1\",\"device\":\"eth0\"},"
                         "{\"dest\":\"0.0.0.0/0\",\"gateway\":\"10.99.0.1\",\"metric\":50},"
                         "{\"dest\":\"10.2.0.0/16\",\"device\":\"eth0\",\"scope\":253,"
                         "\"source\":\"10.99.0.2\"},"
                         "{\"dest\":\"fd00:1::/64\",\"gateway\":\"fd00:99::1\",\"device\":\"eth0\","
                         "\"metric\":100},"
                         "{\"dest\":\"10.3.0.9\",\"device\":\"eth0\"}"
                         "]";
    if (agent_net_update_routes(routes, &err) < 0)
        fail_msg("%s", err_str(&err));
    /* replacing is not an error */
    if (agent_net_update_routes(routes, &err) < 0)
        fail_msg("again: %s", err_str(&err));
    char *s = NULL;
    if (agent_net_list_routes(&s, &err) < 0)
        fail_msg("%s", err_str(&err));
    json_t *a = json_loads(s, 0, NULL);
    assert_non_null(a);
    if (!has_route(a, "10.1.0.0/16", "10.99.0.1", "eth0", 0) ||
        !has_route(a, "0.0.0.0/0", "10.99.0.1", NULL, 50) ||
        !has_route(a, "10.2.0.0/16", NULL, "eth0", 0) ||
        !has_route(a, "fd00:1::/64", "fd00:99::1", "eth0", 100) ||
        !has_route(a, "10.3.0.9/32", NULL, "eth0", 0))
        fail_msg("routes listed: %s", s);
    json_decref(a);
    free(s);
    assert_int_equal(agent_net_update_routes("[]", &err), 0);
}

static void test_net_update_routes_rejects_bad_ones(void **state)
{
    (void)state;
    configure_eth0();
    struct {
        const char *body;
        int code;
        const char *says;
    } cases[] = {
        {"{}", EINVAL, "not a JSON array"},
        {"[1]", EINVAL, "routes[0].dest"},
        {"[{\"dest\":\"nowhere\"}]", EINVAL, "routes[0].dest"},
        {"[{\"dest\":\"10.1.0.0/16\",\"gateway\":\"fd00::1\"}]", EINVAL, "family"},
        {"[{\"dest\":\"10.1.0.0/16\",\"source\":\"fd00::1\"}]", EINVAL, "family"},
        {"[{\"dest\":\"10.1.0.0/16\",\"device\":\"eth0\",\"scope\":256}]", EINVAL, "scope"},
        {"[{\"dest\":\"10.1.0.0/16\",\"device\":\"eth0\",\"metric\":-1}]", EINVAL, "metric"},
        {"[{\"dest\":\"10.1.0.0/16\",\"device\":\"eth0\",\"metric\":4294967296}]", EINVAL, "metric"},
        {"[{\"dest\":\"10.1.0.0/16\",\"device\":\"eth0\"},{\"dest\":\"10.2.0.0/16\","
         "\"device\":\"eth 0\"}]",
         EINVAL, "routes[1].device"},
        {"[{\"dest\":\"10.1.0.0/16\",\"device\":\"nosuch0\"}]", ENODEV, "no device nosuch0"},
        /* the kernel's refusal names the route */
        {"[{\"dest\":\"10.4.0.0/16\",\"gateway\":\"192.0.2.1\"}]", ENETUNREACH,
         "route 10.4.0.0/16 via 192.0.2.1"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        err_t err = ERR_INIT;
        int r = agent_net_update_routes(cases[i].body, &err);
        if (r >= 0 || err.code != cases[i].code || !strstr(err_str(&err), cases[i].says))
            fail_msg("case %zu: r %d, code %d, \"%s\": want %d and \"%s\"", i, r, err.code,
                     err_str(&err), cases[i].code, cases[i].says);
        err_clear(&err);
    }
    char big[66 * 24 + 8];
    int off = snprintf(big, sizeof big, "[");
    for (int i = 0; i < 65; i++)
        off += snprintf(big + off, sizeof big - (size_t)off, "%s{\"dest\":\"10.%d.0.0/16\"}",
                        i ? "," : "", i);
    snprintf(big + off, sizeof big - (size_t)off, "]");
    err_t err = ERR_INIT;
    assert_int_equal(agent_net_update_routes(big, &err), -E2BIG);
    err_clear(&err);
}

static void test_net_add_neighbors(void **state)
{
    (void)state;
    configure_eth0();
    err_t err = ERR_INIT;
    if (agent_net_add_neighbors("[{\"ip\":\"10.99.0.1\",\"mac\":\"" MAC_PEER_A
                                "\",\"device\":\"eth0\"},"
                                "{\"ip\":\"fd00:99::1\",\"mac\":\"" MAC_PEER_A
                                "\",\"device\":\"eth0\",\"state\":128}]",
                                &err) < 0)
        fail_msg("%s", err_str(&err));
    static res_net_t n;
    if (res_net_scan_current(&n, &err) < 0)
        fail_msg("%s", err_str(&err));
    char *s = res_net_neighs_json(&n);
    assert_non_null(s);
    if (!strstr(s, "{\"ip\":\"10.99.0.1\",\"mac\":\"" MAC_PEER_A "\",\"device\":\"eth0\",\"state\":128}") ||
        !strstr(s, "{\"ip\":\"fd00:99::1\",\"mac\":\"" MAC_PEER_A "\",\"device\":\"eth0\",\"state\":128}"))
        fail_msg("neighbours: %s", s);
    free(s);

    struct {
        const char *body;
        int code;
        const char *says;
    } cases[] = {
        {"[{\"ip\":\"10.99.0.300\",\"mac\":\"" MAC_PEER_A "\",\"device\":\"eth0\"}]", EINVAL,
         "neighbors[0]: bad ip"},
        {"[{\"ip\":\"10.99.0.1\",\"mac\":\"zz\",\"device\":\"eth0\"}]", EINVAL, "bad ip or mac"},
        {"[{\"ip\":\"10.99.0.1\",\"mac\":\"" MAC_PEER_A "\"}]", EINVAL, "neighbors[0].device"},
        {"[{\"ip\":\"10.99.0.1\",\"mac\":\"" MAC_PEER_A "\",\"device\":\"eth9\"}]", ENODEV,
         "no device eth9"},
        {"{}", EINVAL, "not a JSON array"},
        {"7", EINVAL, "neighbors"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int r = agent_net_add_neighbors(cases[i].body, &err);
        if (r >= 0 || err.code != cases[i].code || !strstr(err_str(&err), cases[i].says))
            fail_msg("case %zu: r %d, code %d, \"%s\": want %d and \"%s\"", i, r, err.code,
                     err_str(&err), cases[i].code, cases[i].says);
        err_clear(&err);
    }
}

static void test_net_lo_up(void **state)
{
    (void)state;
    assert_false(is_up("lo")); /* a fresh namespace */
    err_t err = ERR_INIT;
    if (agent_net_lo_up(&err) < 0)
        fail_msg("%s", err_str(&err));
    assert_true(is_up("lo"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_net_update_interface_configures_the_link, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_net_update_interface_moves_a_name_holder_aside, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_net_update_interface_unknown_mac_is_eagain, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_net_update_interface_rejects_bad_bodies, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_net_update_routes_adds_them, setup, teardown),
        cmocka_unit_test_setup_teardown(test_net_update_routes_rejects_bad_ones, setup, teardown),
        cmocka_unit_test_setup_teardown(test_net_add_neighbors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_net_lo_up, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
