/* agent/guest/net: see net.h. */
#include <net/if.h>

#include "agent/guest/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <linux/if_addr.h>
#include <linux/if_arp.h>
#include <linux/neighbour.h>
#include <linux/rtnetlink.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "resources/net.h"
#include "resources/netlink.h"

#define NET_MAX_ITEMS 64

static bool name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n >= IFNAMSIZ || !strcmp(s, ".") || !strcmp(s, ".."))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '.' || s[i] == '-'))
            return false;
    return true;
}

/* "10.1.2.3/24", "fd00::2/64" or a bare address (host prefix when
 * allow_bare).  Returns the family or -1. */
static int parse_prefix(const char *s, uint8_t addr[16], unsigned *len, bool allow_bare)
{
    char buf[INET6_ADDRSTRLEN + 8];
    if (!s || strlen(s) >= sizeof buf)
        return -1;
    snprintf(buf, sizeof buf, "%s", s);
    char *slash = strchr(buf, '/');
    if (slash)
        *slash = 0;
    else if (!allow_bare)
        return -1;
    int fam = strchr(buf, ':') ? AF_INET6 : AF_INET;
    if (inet_pton(fam, buf, addr) != 1)
        return -1;
    unsigned max = fam == AF_INET6 ? 128 : 32;
    if (slash) {
        char *end;
        unsigned long l = strtoul(slash + 1, &end, 10);
        if (!slash[1] || *end || l > max)
            return -1;
        *len = (unsigned)l;
    } else {
        *len = max;
    }
    return fam;
}

static int parse_ip(const char *s, uint8_t addr[16])
{
    if (!s)
        return -1;
    int fam = strchr(s, ':') ? AF_INET6 : AF_INET;
    return inet_pton(fam, s, addr) == 1 ? fam : -1;
}

static json_t *load(const char *json, bool want_array, const char *what, err_t *err)
{
    json_error_t je;
    json_t *j = json_loads(json ? json : "", 0, &je);
    if (!j) {
        err_make(err, EINVAL, "%s: %s", what, je.text);
        return NULL;
    }
    if (want_array ? !json_is_array(j) : !json_is_object(j)) {
        json_decref(j);
        err_make(err, EINVAL, "%s: not a JSON %s", what, want_array ? "array" : "object");
        return NULL;
    }
    if (want_array && json_array_size(j) > NET_MAX_ITEMS) {
        json_decref(j);
        err_make(err, E2BIG, "%s: more than %d entries", what, NET_MAX_ITEMS);
        return NULL;
    }
    return j;
}

/* ---- interfaces ---------------------------------------------------------------- */

struct link_find {
    uint8_t mac[6];
    int index;
    char name[IFNAMSIZ];
    const char *want_name;
    int name_index;
};

static int link_cb(const struct nlmsghdr *nlh, void *data)
{
    struct link_find *f = data;
    const struct ifinfomsg *ifi = mnl_nlmsg_get_payload(nlh);
    if (nlh->nlmsg_type != RTM_NEWLINK || mnl_nlmsg_get_payload_len(nlh) < sizeof *ifi)
        return MNL_CB_OK;
    const struct nlattr *a, *mac = NULL, *name = NULL;
    mnl_attr_for_each(a, nlh, sizeof *ifi)
    {
        if (mnl_attr_get_type(a) == IFLA_ADDRESS)
            mac = a;
        else if (mnl_attr_get_type(a) == IFLA_IFNAME &&
                 mnl_attr_validate(a, MNL_TYPE_NUL_STRING) == 0)
            name = a;
    }
    if (ifi->ifi_type == ARPHRD_ETHER && mac && mnl_attr_get_payload_len(mac) == 6 &&
        !memcmp(mnl_attr_get_payload(mac), f->mac, 6)) {
        f->index = ifi->ifi_index;
        if (name)
            snprintf(f->name, sizeof f->name, "%s", mnl_attr_get_str(name));
    }
    if (name && f->want_name && !strcmp(mnl_attr_get_str(name), f->want_name))
        f->name_index = ifi->ifi_index;
    return MNL_CB_OK;
}

/* Global addresses of ifindex, to remove those not wanted. */
struct addr_list {
    int index;
    struct {
        int family;
        uint8_t a[16];
        unsigned len;
    } v[NET_MAX_ITEMS];
    unsigned n;
};

static int addr_cb(const struct nlmsghdr *nlh, void *data)
{
    struct addr_list *l = data;
    const struct ifaddrmsg *ifa = mnl_nlmsg_get_payload(nlh);
    if (nlh->nlmsg_type != RTM_NEWADDR || mnl_nlmsg_get_payload_len(nlh) < sizeof *ifa ||
        (int)ifa->ifa_index != l->index || ifa->ifa_scope != RT_SCOPE_UNIVERSE ||
        l->n >= NET_MAX_ITEMS)
        return MNL_CB_OK;
    const struct nlattr *a, *ad = NULL;
    mnl_attr_for_each(a, nlh, sizeof *ifa)
    {
        if (mnl_attr_get_type(a) == IFA_LOCAL || (!ad && mnl_attr_get_type(a) == IFA_ADDRESS))
            ad = a;
    }
    size_t want = ifa->ifa_family == AF_INET6 ? 16 : 4;
    if (!ad || mnl_attr_get_payload_len(ad) != want)
        return MNL_CB_OK;
    l->v[l->n].family = ifa->ifa_family;
    l->v[l->n].len = ifa->ifa_prefixlen;
    memcpy(l->v[l->n].a, mnl_attr_get_payload(ad), want);
    l->n++;
    return MNL_CB_OK;
}

int agent_net_update_interface(const char *json, char **out, err_t *err)
{
    json_t *j = load(json, false, "interface", err);
    if (!j)
        return -err->code;
    int r = 0;
    res_nl_t *nl = NULL;
    char buf[RES_NL_BUF];
    const char *name = json_string_value(json_object_get(j, "name"));
    const char *mac_s = json_string_value(json_object_get(j, "mac"));
    json_t *mtu_j = json_object_get(j, "mtu"), *addrs = json_object_get(j, "addresses");
    struct link_find f = {.want_name = name};
    if (!name_ok(name)) {
        r = err_make(err, EINVAL, "interface.name: must match [A-Za-z0-9_.-]{1,15}");
        goto out;
    }
    if (res_nl_mac_parse(mac_s, f.mac) < 0) {
        r = err_make(err, EINVAL, "interface.mac: not aa:bb:cc:dd:ee:ff");
        goto out;
    }
    json_int_t mtu = json_is_integer(mtu_j) ? json_integer_value(mtu_j) : 0;
    if (mtu_j && !json_is_null(mtu_j) && (mtu < 68 || mtu > 65535)) {
        r = err_make(err, EINVAL, "interface.mtu: %lld is not within 68..65535", (long long)mtu);
        goto out;
    }
    if (addrs && !json_is_array(addrs)) {
        r = err_make(err, EINVAL, "interface.addresses: not an array");
        goto out;
    }
    size_t na = json_array_size(addrs);
    if (na > NET_MAX_ITEMS) {
        r = err_make(err, E2BIG, "interface.addresses: more than %d", NET_MAX_ITEMS);
        goto out;
    }
    struct {
        int family;
        uint8_t a[16];
        unsigned len;
    } want[NET_MAX_ITEMS];
    for (size_t i = 0; i < na; i++) {
        want[i].family = parse_prefix(json_string_value(json_array_get(addrs, i)), want[i].a,
                                      &want[i].len, false);
        if (want[i].family < 0) {
            r = err_make(err, EINVAL, "interface.addresses[%zu]: not an address/prefix", i);
            goto out;
        }
    }
    if ((r = res_nl_open(&nl, err)) < 0)
        goto out;
    if ((r = res_nl_talk(nl, res_nl_dump(buf, RTM_GETLINK, AF_UNSPEC), link_cb, &f, "list links",
                         err)) < 0)
        goto out;
    if (!f.index) {
        r = err_make(err, EAGAIN, "no interface with MAC %s (yet)", mac_s);
        goto out;
    }
    if ((r = res_nl_talk(nl, res_nl_link_set(buf, f.index, NULL, 0, true, false), NULL, NULL,
                         "set the link down", err)) < 0)
        goto out;
    if (strcmp(f.name, name)) {
        if (f.name_index && f.name_index != f.index) {
            char aside[IFNAMSIZ];
            snprintf(aside, sizeof aside, "husk%d", f.name_index);
            if ((r = res_nl_talk(nl, res_nl_link_set(buf, f.name_index, aside, 0, true, false),
                                 NULL, NULL, "move a link aside", err)) < 0)
                goto out;
        }
        if ((r = res_nl_talk(nl, res_nl_link_set(buf, f.index, name, 0, false, false), NULL, NULL,
                             "rename the link", err)) < 0)
            goto out;
    }
    if (mtu &&
        (r = res_nl_talk(nl, res_nl_link_set(buf, f.index, NULL, (unsigned)mtu, false, false), NULL,
                         NULL, "set the MTU", err)) < 0)
        goto out;
    /* the addresses are exactly the given ones */
    static struct addr_list have;
    memset(&have, 0, sizeof have);
    have.index = f.index;
    if ((r = res_nl_talk(nl, res_nl_dump(buf, RTM_GETADDR, AF_UNSPEC), addr_cb, &have,
                         "list addresses", err)) < 0)
        goto out;
    for (unsigned i = 0; i < have.n; i++) {
        bool keep = false;
        for (size_t k = 0; k < na && !keep; k++)
            keep = want[k].family == have.v[i].family && want[k].len == have.v[i].len &&
                   !memcmp(want[k].a, have.v[i].a, have.v[i].family == AF_INET6 ? 16 : 4);
        if (!keep && (r = res_nl_talk(nl,
                                      res_nl_addr(buf, RTM_DELADDR, have.v[i].family, f.index,
                                                  have.v[i].a, have.v[i].len, false),
                                      NULL, NULL, "remove an old address", err)) < 0)
            goto out;
    }
    for (size_t i = 0; i < na; i++)
        if ((r = res_nl_talk(nl,
                             res_nl_addr(buf, RTM_NEWADDR, want[i].family, f.index, want[i].a,
                                         want[i].len, true),
                             NULL, NULL, "add an address", err)) < 0) {
            err_wrap(err, "%s", json_string_value(json_array_get(addrs, i)));
            goto out;
        }
    if ((r = res_nl_talk(nl, res_nl_link_set(buf, f.index, NULL, 0, true, true), NULL, NULL,
                         "set the link up", err)) < 0)
        goto out;
    log_info("network: %s (%s, was %s) mtu %lld, %zu address(es)", name, mac_s, f.name,
             (long long)mtu, na);
    if (out && !(*out = json_dumps(j, JSON_COMPACT)))
        r = err_make(err, ENOMEM, "out of memory");
out:
    if (r < 0 && err->code != EAGAIN)
        err_wrap(err, "update interface %s", name ? name : "?");
    res_nl_close(&nl);
    json_decref(j);
    return r;
}

/* ---- routes and neighbours -------------------------------------------------------- */

static int dev_index(const char *dev, const char *what, size_t i, err_t *err)
{
    if (!name_ok(dev))
        return err_make(err, EINVAL, "%s[%zu].device: must match [A-Za-z0-9_.-]{1,15}", what, i);
    int idx = (int)if_nametoindex(dev);
    if (idx <= 0)
        return err_make(err, ENODEV, "%s[%zu]: no device %s", what, i, dev);
    return idx;
}

int agent_net_update_routes(const char *json, err_t *err)
{
    json_t *j = load(json, true, "routes", err);
    if (!j)
        return -err->code;
    res_nl_t *nl = NULL;
    char buf[RES_NL_BUF];
    int r = res_nl_open(&nl, err);
    size_t i;
    json_t *o;
    json_array_foreach(j, i, o)
    {
        if (r < 0)
            break;
        uint8_t dst[16] = {0}, gw[16], src[16];
        unsigned dlen = 0;
        const char *dest = json_string_value(json_object_get(o, "dest"));
        const char *gws = json_string_value(json_object_get(o, "gateway"));
        const char *srcs = json_string_value(json_object_get(o, "source"));
        const char *dev = json_string_value(json_object_get(o, "device"));
        json_int_t scope = json_integer_value(json_object_get(o, "scope"));
        json_int_t metric = json_integer_value(json_object_get(o, "metric"));
        int fam = json_is_object(o) ? parse_prefix(dest, dst, &dlen, true) : -1;
        if (fam < 0) {
            r = err_make(err, EINVAL, "routes[%zu].dest: not an address/prefix", i);
            break;
        }
        if ((gws && parse_ip(gws, gw) != fam) || (srcs && parse_ip(srcs, src) != fam)) {
            r = err_make(err, EINVAL, "routes[%zu]: gateway/source not of the destination's family",
                         i);
            break;
        }
        if (scope < 0 || scope > 255 || metric < 0 || metric > 0xffffffffLL) {
            r = err_make(err, EINVAL, "routes[%zu]: scope or metric out of range", i);
            break;
        }
        int oif = 0;
        if (dev && (oif = dev_index(dev, "routes", i, err)) < 0) {
            r = oif;
            break;
        }
        r = res_nl_talk(nl,
                        res_nl_route(buf, RTM_NEWROUTE, fam, dst, dlen, gws ? gw : NULL,
                                     srcs ? src : NULL, oif, (unsigned)scope, (unsigned)metric),
                        NULL, NULL, "add a route", err);
        if (r < 0)
            err_wrap(err, "route %s%s%s", dest, gws ? " via " : "", gws ? gws : "");
    }
    if (r == 0)
        log_info("network: %zu route(s)", json_array_size(j));
    res_nl_close(&nl);
    json_decref(j);
    return r;
}

int agent_net_add_neighbors(const char *json, err_t *err)
{
    json_t *j = load(json, true, "neighbors", err);
    if (!j)
        return -err->code;
    res_nl_t *nl = NULL;
    char buf[RES_NL_BUF];
    int r = res_nl_open(&nl, err);
    size_t i;
    json_t *o;
    json_array_foreach(j, i, o)
    {
        if (r < 0)
            break;
        uint8_t ip[16], mac[6];
        int fam = parse_ip(json_string_value(json_object_get(o, "ip")), ip);
        json_int_t state = json_integer_value(json_object_get(o, "state"));
        if (fam < 0 || res_nl_mac_parse(json_string_value(json_object_get(o, "mac")), mac) < 0) {
            r = err_make(err, EINVAL, "neighbors[%zu]: bad ip or mac", i);
            break;
        }
        int idx = dev_index(json_string_value(json_object_get(o, "device")), "neighbors", i, err);
        if (idx < 0) {
            r = idx;
            break;
        }
        r = res_nl_talk(
            nl,
            res_nl_neigh(buf, fam, idx, ip, mac,
                         state > 0 && state <= 0xffff ? (uint16_t)state : NUD_PERMANENT),
            NULL, NULL, "add a neighbour", err);
    }
    res_nl_close(&nl);
    json_decref(j);
    return r;
}

/* ---- listing ------------------------------------------------------------------- */

int agent_net_list_interfaces(char **out, err_t *err)
{
    static res_net_t n;
    int r = res_net_scan_current(&n, err);
    if (r < 0)
        return r;
    json_t *a = json_array();
    for (unsigned i = 0; i < n.n_ifs; i++) {
        char *s = res_net_iface_json(&n.ifs[i]);
        json_t *o = s ? json_loads(s, 0, NULL) : NULL;
        free(s);
        if (o)
            json_array_append_new(a, o);
    }
    *out = json_dumps(a, JSON_COMPACT);
    json_decref(a);
    return *out ? 0 : err_make(err, ENOMEM, "out of memory");
}

int agent_net_list_routes(char **out, err_t *err)
{
    static res_net_t n;
    int r = res_net_scan_current(&n, err);
    if (r < 0)
        return r;
    *out = res_net_routes_json(&n);
    return *out ? 0 : err_make(err, ENOMEM, "out of memory");
}

int agent_net_lo_up(err_t *err)
{
    int idx = (int)if_nametoindex("lo");
    if (idx <= 0)
        return err_errno(err, "no lo");
    res_nl_t *nl = NULL;
    char buf[RES_NL_BUF];
    int r = res_nl_open(&nl, err);
    if (r == 0)
        r = res_nl_talk(nl, res_nl_link_set(buf, idx, NULL, 0, true, true), NULL, NULL, "set lo up",
                        err);
    res_nl_close(&nl);
    return r;
}
