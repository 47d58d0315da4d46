/* persist_actor: the "persist" actor, owner of the daemon's state files.
 *
 * It holds the daemon's persist_store_t (persist/store.h) and is the only
 * writer of sandbox.json and container.json while a daemon runs; the
 * runtime asks it by message (messages/catalog.h, persist.*) and goes on
 * with an operation when the write is acknowledged, so that what a front
 * end is told is on disk, and no fsync ever blocks the runtime's loop.
 *
 *   persist.save_sandbox / save_container   -> persist.saved | persist.error
 *   persist.remove_container / remove_sandbox -> persist.saved | persist.error
 *   persist.load                            -> persist.loaded | persist.error
 *   fault.inject enospc|eio (from the broker) -> agent.ok
 *
 * Writes happen on the actor's thread in the order received.  A save that
 * fails is tried PERSIST_SAVE_ATTEMPTS times at once; when it still fails,
 * the answer is persist.error with pending = true and the record (the
 * newest one sent for that file) is rewritten in the background, backoff
 * PERSIST_RETRY_MS doubling to PERSIST_RETRY_MAX_MS, until it goes
 * through.  A newer save of the same file replaces it; a remove forgets
 * it.  Records that never got written when the actor stops are logged.
 *
 * Readers without a daemon (husk state/list, the shim's cleanup of a dead
 * sandbox) keep reading the files through persist/store.h, as runc's
 * state reads its files (docs/state.md). */
#ifndef HUSK_PERSIST_ACTOR_H
#define HUSK_PERSIST_ACTOR_H

#include "actors/actor.h"

#define PERSIST_ACTOR_NAME    "persist"
#define PERSIST_SAVE_ATTEMPTS 3
#define PERSIST_RETRY_MS      100
#define PERSIST_RETRY_MAX_MS  5000

/* Opens the store under root (NULL = PERSIST_DEFAULT_ROOT; reads
 * HUSK_PERSIST_FAIL) and starts the actor.  Caller owns *out and stops it
 * with actor_stop(), after the actors that write through it. */
int persist_actor_start(const actor_opts_t *opts, const char *root, actor_t **out, err_t *err);

#endif
