/* catalog: every message type of husk, declared once.
 *
 * Each type has a field list macro MSG_FIELDS_<sym>(F, S) and one line in
 * MSG_CATALOG.  From these two come the C struct msg_<sym>_t, the enum id
 * MSG_<SYM>, the wire name, and the field descriptors that drive the one
 * encoder, the validating decoder and the trace printer (messages/msg.c).
 *
 * Field kinds (F(S, KIND, name, max)):
 *   BOOL, I64, U64      scalars (max unused, 0)
 *   STR                 char *, at most max bytes, no NUL; decodes to "" when absent
 *   JSON                char *, JSON text of at most max bytes, checked on decode
 *   BIN                 msg_bin_t, at most max bytes
 *   STRV                msg_strv_t, at most max items of at most MSG_ITEM_MAX bytes
 *   U64V                msg_u64v_t, at most max items
 * Bodies travel as msgpack maps keyed by field name: unknown keys are
 * skipped (older readers), missing keys decode to zero values (newer ones).
 *
 * Wire names are "<family>.<verb>"; families: bus, actor, test, agent,
 * hv (hypervisor), rt (runtime), res (resources), persist, svc. */
#ifndef HUSK_MSG_CATALOG_H
#define HUSK_MSG_CATALOG_H

#define MSG_ITEM_MAX  (64 * 1024)
#define MSG_SMALL     256
#define MSG_PATH      4096
#define MSG_SPEC      (1024 * 1024)

/* ---- bus: the broker's own messages ---------------------------------- */
/* A failure reply with no more specific type; envelope status says why. */
#define MSG_FIELDS_bus_error(F, S)
/* Liveness probe sent by the supervisor or anyone; answered by bus.pong. */
#define MSG_FIELDS_bus_ping(F, S) F(S, U64, seq, 0)
#define MSG_FIELDS_bus_pong(F, S) F(S, U64, seq, 0)
/* First message of every actor to the broker (to = "bus"). */
#define MSG_FIELDS_bus_hello(F, S) F(S, STR, name, MSG_SMALL) F(S, U64, pid, 0)
/* Orderly goodbye: the broker forgets the actor and publishes actor.down. */
#define MSG_FIELDS_bus_bye(F, S) F(S, STR, reason, MSG_SMALL)
/* Receive every event whose type name starts with prefix ("" = all). */
#define MSG_FIELDS_bus_subscribe(F, S) F(S, STR, prefix, MSG_SMALL)
/* Fault rules: add rules in the HUSK_FAULTS grammar (docs/faults.md). */
#define MSG_FIELDS_bus_fault_set(F, S) F(S, STR, rules, MSG_ITEM_MAX)
#define MSG_FIELDS_bus_fault_clear(F, S)
#define MSG_FIELDS_bus_fault_list(F, S)
/* Reply to fault_set/clear/list: the rules now active and their hit counts. */
#define MSG_FIELDS_bus_fault_state(F, S) F(S, STRV, rules, 256) F(S, U64V, hits, 256)
/* Names of the actors the broker knows. */
#define MSG_FIELDS_bus_list(F, S)
#define MSG_FIELDS_bus_actors(F, S) F(S, STRV, names, 1024)
/* Echo: the receiver replies with the same body (tests, benchmarks). */
#define MSG_FIELDS_bus_echo(F, S) F(S, U64, seq, 0) F(S, BIN, data, 4 * 1024 * 1024)

/* ---- actor: supervision events ---------------------------------------- */
#define MSG_FIELDS_actor_up(F, S) F(S, STR, name, MSG_SMALL) F(S, U64, pid, 0)
#define MSG_FIELDS_actor_down(F, S) F(S, STR, name, MSG_SMALL) F(S, STR, reason, MSG_SMALL)

/* ---- test: shapes used only by the codec tests ------------------------- */
#define MSG_FIELDS_test_all(F, S)                                                                  \
    F(S, BOOL, flag, 0)                                                                            \
    F(S, I64, num, 0)                                                                              \
    F(S, U64, count, 0)                                                                            \
    F(S, STR, name, 64)                                                                            \
    F(S, JSON, doc, 4096)                                                                          \
    F(S, BIN, blob, 4096)                                                                          \
    F(S, STRV, words, 16)                                                                          \
    F(S, U64V, nums, 16)

/* M(SYM, sym, "wire.name") */
#define MSG_CATALOG(M)                                                                             \
    M(BUS_ERROR, bus_error, "bus.error")                                                           \
    M(BUS_PING, bus_ping, "bus.ping")                                                              \
    M(BUS_PONG, bus_pong, "bus.pong")                                                              \
    M(BUS_HELLO, bus_hello, "bus.hello")                                                           \
    M(BUS_BYE, bus_bye, "bus.bye")                                                                 \
    M(BUS_SUBSCRIBE, bus_subscribe, "bus.subscribe")                                               \
    M(BUS_FAULT_SET, bus_fault_set, "bus.fault_set")                                               \
    M(BUS_FAULT_CLEAR, bus_fault_clear, "bus.fault_clear")                                         \
    M(BUS_FAULT_LIST, bus_fault_list, "bus.fault_list")                                            \
    M(BUS_FAULT_STATE, bus_fault_state, "bus.fault_state")                                         \
    M(BUS_LIST, bus_list, "bus.list")                                                              \
    M(BUS_ACTORS, bus_actors, "bus.actors")                                                        \
    M(BUS_ECHO, bus_echo, "bus.echo")                                                              \
    M(ACTOR_UP, actor_up, "actor.up")                                                              \
    M(ACTOR_DOWN, actor_down, "actor.down")                                                        \
    M(TEST_ALL, test_all, "test.all")

#endif
