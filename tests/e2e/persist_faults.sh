#!/bin/bash
# e2e: state writes that fail (the enospc/eio fault actions, docs/faults.md)
# through the husk CLI with the local backend.  A transient failure is
# absorbed by the runtime's retries; a lasting one fails the operation,
# which is undone so that the state on disk never claims what is not
# (start: the container is killed; pause: it is resumed); the file catches
# up once the disk takes writes again.
# Prints "ok - name" / "not ok - name"; exits 77 when it cannot run.
set -u
B=${B:-build}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/tests/helpers/cli_e2e.sh"
cli_e2e_need pf "$B/bin/husk" "$B/bin/husk-agent"
ID=pf$$
export HUSK_HYPERVISOR=local
config '["sleep", "1000"]'

status() { "$HUSK_BIN" --root "$R" state "$1" 2>/dev/null | sed -n 's/.*"status": "\([a-z]*\)".*/\1/p'; }
on_disk() { sed -n 's/.*"state": *"\([a-z]*\)".*/\1/p' "$R/$1/$1/container.json" 2>/dev/null; }
# until SECONDS CMD...: polls CMD every 0.1 s
until_ok() {
    local n=$(($1 * 10))
    shift
    for _ in $(seq "$n"); do "$@" && return 0; sleep 0.1; done
    return 1
}

# ---- a transient failure is absorbed ------------------------------------------------------
C=$ID-a
HUSK_FAULTS='enospc:2 type=rt.start' run create "$C"
run start "$C"
check "2 failed writes at start: start succeeds (retried)" eval '[ $RC = 0 ]'
check "... and the state on disk says running" eval '[ "$(on_disk $C)" = running ] && [ "$(status $C)" = running ]'
run delete -f "$C"

# ---- a lasting failure at start: the start fails and is undone ------------------------------
C=$ID-b
HUSK_FAULTS='enospc:8 type=rt.start' run create "$C"
run start "$C"
check "lasting ENOSPC at start: start fails, saying why and what was done" \
    eval '[ $RC != 0 ] && err_has "state could not be saved.*No space left on device.*the container was killed"'
check "the disk never says running" eval '[ "$(on_disk $C)" != running ]'
check "state reports stopped" until_ok 10 eval '[ "$(status $C)" = stopped ]'
check "the file catches up once writes pass (stopped)" until_ok 15 eval '[ "$(on_disk $C)" = stopped ]'
run delete "$C"
check "delete works" eval '[ $RC = 0 ] && [ ! -e $R/$C ]'

# ---- a lasting failure at pause: the pause fails, the container runs on -------------------
C=$ID-c
HUSK_FAULTS='eio:6 type=rt.pause' run create "$C"
run start "$C"
run pause "$C"
check "lasting EIO at pause: pause fails, the container was resumed" \
    eval '[ $RC != 0 ] && err_has "state could not be saved.*Input/output error.*the container was resumed"'
check "state and disk say running" eval '[ "$(status $C)" = running ] && [ "$(on_disk $C)" = running ]'
run exec "$C" echo alive
check "the container is not frozen (exec answers)" eval '[ $RC = 0 ] && has "^alive$"'
run delete -f "$C"

# ---- a lasting failure at create: nothing is left ---------------------------------------------
C=$ID-d
HUSK_FAULTS='eio:20 type=agent.create_container' run create "$C"
check "lasting EIO at create: create fails, naming the write" eval '[ $RC != 0 ] && err_has "save state"'
check "no container is known afterwards" eval '! "$HUSK_BIN" --root "$R" state $C >/dev/null 2>&1'

until_ok 10 eval '[ -z "$(ls -A "$R" 2>/dev/null)" ]'
check "no state directory left" eval '[ -z "$(ls -A $R 2>/dev/null)" ]'
check "no process left" eval '[ -z "$(pgrep -f "$T/" 2>/dev/null)" ]'
exit $fail
