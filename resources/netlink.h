/* resources/netlink: a small synchronous rtnetlink layer over libmnl,
 * shared by the host resource manager (resources/net.c) and husk-agent's
 * network handlers (agent/guest/net.c).
 *
 * Builders fill a caller's buffer (at least RES_NL_BUF bytes) with one
 * request and return its header; they do not touch any socket and can be
 * checked without privileges.  res_nl_talk() sends one request and reads
 * until the kernel's ACK (or NLMSG_DONE for a dump), calling `cb` for
 * every data message.  Addresses are binary (struct in_addr / in6_addr);
 * `family` is AF_INET or AF_INET6. */
#ifndef HUSK_RES_NETLINK_H
#define HUSK_RES_NETLINK_H

#include <libmnl/libmnl.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"

#define RES_NL_BUF 4096

typedef struct res_nl res_nl_t;

/* A NETLINK_ROUTE socket in the calling thread's network namespace. */
int res_nl_open(res_nl_t **out, err_t *err);
void res_nl_close(res_nl_t **nl);
/* Sends nlh (NLM_F_ACK is added unless it is a dump; seq is filled) and
 * reads the answer.  Returns 0, or a negative errno with err filled
 * (`what` names the request in the message). */
int res_nl_talk(res_nl_t *nl, struct nlmsghdr *nlh, mnl_cb_t cb, void *data, const char *what,
                err_t *err);

/* A dump request: RTM_GETLINK, RTM_GETADDR, RTM_GETROUTE, RTM_GETNEIGH,
 * RTM_GETQDISC (family AF_UNSPEC for links/qdiscs). */
struct nlmsghdr *res_nl_dump(void *buf, uint16_t type, uint8_t family);

/* RTM_NEWLINK on ifindex: name (NULL: keep), mtu (0: keep), up / down
 * (change only when set_up). */
struct nlmsghdr *res_nl_link_set(void *buf, int ifindex, const char *name, unsigned mtu,
                                 bool set_up, bool up);
/* RTM_NEWLINK setting only the transmit queue length. */
struct nlmsghdr *res_nl_link_txqlen(void *buf, int ifindex, unsigned txqlen);
/* RTM_DELLINK of ifindex. */
struct nlmsghdr *res_nl_link_del(void *buf, int ifindex);
/* RTM_NEWADDR / RTM_DELADDR.  IPv6 addresses get IFA_F_NODAD when nodad. */
struct nlmsghdr *res_nl_addr(void *buf, uint16_t cmd, int family, int ifindex, const void *addr,
                             unsigned prefix, bool nodad);
/* RTM_NEWROUTE (create or replace) / RTM_DELROUTE in the main table.  dst
 * NULL with dst_len 0 is the default route; gw, src may be NULL; oif 0:
 * none; metric 0: none.  scope RT_SCOPE_UNIVERSE or RT_SCOPE_LINK. */
struct nlmsghdr *res_nl_route(void *buf, uint16_t cmd, int family, const void *dst,
                              unsigned dst_len, const void *gw, const void *src, int oif,
                              unsigned scope, unsigned metric);
/* RTM_NEWNEIGH (create or replace) of ip -> lladdr (6 bytes) on ifindex. */
struct nlmsghdr *res_nl_neigh(void *buf, int family, int ifindex, const void *ip,
                              const uint8_t lladdr[6], uint16_t state);
/* RTM_NEWQDISC (exclusive) / RTM_DELQDISC: the ingress qdisc of ifindex. */
struct nlmsghdr *res_nl_qdisc_ingress(void *buf, uint16_t cmd, int ifindex);
/* RTM_NEWTFILTER (exclusive): at parent ffff: of ifindex, protocol all,
 * priority prio, a u32 filter matching every packet with the action
 * "mirred egress redirect dev to_ifindex" (Kata's tc-filter model). */
struct nlmsghdr *res_nl_redirect(void *buf, int ifindex, int to_ifindex, uint16_t prio);
/* RTM_DELTFILTER: every filter of priority prio at ingress of ifindex. */
struct nlmsghdr *res_nl_redirect_del(void *buf, int ifindex, uint16_t prio);

/* "aa:bb:cc:dd:ee:ff" <-> 6 bytes.  Parse returns -1 when malformed. */
int res_nl_mac_parse(const char *s, uint8_t mac[6]);
void res_nl_mac_format(const uint8_t mac[6], char out[18]);

#endif
