/* agent/guest/net: husk-agent's network configuration, straight netlink
 * (resources/netlink.h over libmnl; no iproute2 in the guest).
 *
 * Bodies (JSON, docs/networking.md):
 *   interface  {"name": "eth0", "mac": "0a:58:..", "mtu": 1500,
 *               "addresses": ["10.99.0.2/24", "fd00:99::2/64"]}
 *   routes     [{"dest": "0.0.0.0/0" | "10.1.0.0/16", "gateway": "10.99.0.1",
 *                "source": "..", "device": "eth0", "scope": 0, "metric": 0}]
 *   neighbors  [{"ip": "10.99.0.1", "mac": "..", "device": "eth0", "state": 128}]
 * The guest is told everything by the host, which the agent trusts no
 * more than needed: every field is checked (names [A-Za-z0-9_.-]{1,15},
 * addresses parsed, prefixes bounded, at most 64 entries). */
#ifndef HUSK_AGENT_GUEST_NET_H
#define HUSK_AGENT_GUEST_NET_H

#include "common/err.h"

/* Finds the link with the interface's MAC, brings it down, renames it
 * (moving a link that holds the name aside), sets the MTU, replaces its
 * global addresses by the given ones (IPv6 without DAD), brings it up.
 * -EAGAIN (err set) when no link has that MAC yet (hotplug in progress:
 * the caller retries).  *out: the interface as configured (JSON). */
int agent_net_update_interface(const char *json, char **out, err_t *err);
/* Adds (or replaces) every route, in order. */
int agent_net_update_routes(const char *json, err_t *err);
/* Adds (or replaces) every neighbour. */
int agent_net_add_neighbors(const char *json, err_t *err);
/* JSON arrays of what the guest has (interfaces: as above, lo skipped). */
int agent_net_list_interfaces(char **out, err_t *err);
int agent_net_list_routes(char **out, err_t *err);
/* Brings lo up in the calling thread's network namespace. */
int agent_net_lo_up(err_t *err);

#endif
