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

#define MSG_ITEM_MAX (64 * 1024)
#define MSG_SMALL    256
#define MSG_PATH     4096
#define MSG_SPEC     (1024 * 1024)

/* ---- bus: the broker's own messages ---------------------------------- */
/* A failure reply with no more specific type; envelope status says why. */
#define MSG_FIELDS_bus_error(F, S)
/* Liveness probe sent by the supervisor or anyone; answered by bus.pong. */
#define MSG_FIELDS_bus_ping(F, S) F(S, U64, seq, 0)
/* epoch: the broker's life; a new value means a new daemon (restore) */
#define MSG_FIELDS_bus_pong(F, S) F(S, U64, seq, 0) F(S, U64, epoch, 0)
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
#define MSG_FIELDS_actor_up(F, S)   F(S, STR, name, MSG_SMALL) F(S, U64, pid, 0)
#define MSG_FIELDS_actor_down(F, S) F(S, STR, name, MSG_SMALL) F(S, STR, reason, MSG_SMALL)

/* ---- fault: fault injection outside the bus (docs/faults.md) ------------
 * Sent by the broker (from "bus") when an effect rule fires; a test
 * facility that does nothing unless a fault rule was set.  action:
 *   kill        any actor: its thread ends at once, without a goodbye
 *   kill-vmm    runtime: SIGKILL of the VMM (qemu, or the local agent process)
 *   enospc, eio persist: its next `count` state writes fail with that errno
 *   agent-exit, agent-hang  agent actor -> husk-agent: exits / stops answering
 * Answered by agent.ok (or not at all: kill, agent-exit, agent-hang). */
#define MSG_FIELDS_fault_inject(F, S) F(S, STR, action, MSG_SMALL) F(S, U64, count, 0)

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

/* ---- agent: the guest-agent protocol (docs/agent-protocol.md) ----------
 * Requests go from any actor to the `agent` actor (agent/agent_actor.h),
 * which forwards them to husk-agent in the guest over the agent channel
 * (agent/frame.h) and maps the answer back.  Ids: container_id and exec_id
 * match [A-Za-z0-9_.-]{1,64}; exec_id "" names the container's init.
 * An empty reply is agent.ok; a failure is a bus.error whose envelope
 * status carries an errno and a text.  JSON fields are never empty: send
 * "null", "[]" or "{}" when there is nothing to say.
 * The limits keep every envelope below AGENT_FRAME_MAX (1 MiB + 64 KiB). */
#define AGENT_ID_MAX    64
#define AGENT_SPEC_MAX  (768 * 1024)
#define AGENT_STORE_MAX (64 * 1024)
#define AGENT_CHUNK_MAX (64 * 1024)
#define AGENT_PROC_MAX  (256 * 1024)
#define AGENT_NET_MAX   (64 * 1024)
/* The empty success reply. */
#define MSG_FIELDS_agent_ok(F, S)
/* Health check (Kata Health.Check) -> agent.health. */
#define MSG_FIELDS_agent_check(F, S) F(S, STR, service, MSG_SMALL)
/* status: "SERVING" or "NOT_SERVING"; version of husk-agent. */
#define MSG_FIELDS_agent_health(F, S) F(S, STR, status, MSG_SMALL) F(S, STR, version, MSG_SMALL)
/* Guest details -> agent.details. */
#define MSG_FIELDS_agent_guest_details(F, S)
#define MSG_FIELDS_agent_details(F, S)                                                             \
    F(S, STR, agent_version, MSG_SMALL)                                                            \
    F(S, STR, kernel_release, MSG_SMALL)                                                           \
    F(S, STR, kernel_version, MSG_SMALL)                                                           \
    F(S, STR, machine, MSG_SMALL)                                                                  \
    F(S, U64, uptime_ms, 0)                                                                        \
    F(S, BOOL, init, 0)                                                                            \
    F(S, BOOL, cgroup2, 0)                                                                         \
    F(S, STRV, features, 64)
/* storages: JSON array of {"driver": "9p", "source": tag, "mount_point":
 * absolute guest path, "options": ["trans=virtio", ...]} (docs). */
#define MSG_FIELDS_agent_create_sandbox(F, S)                                                      \
    F(S, STR, sandbox_id, AGENT_ID_MAX)                                                            \
    F(S, STR, hostname, MSG_SMALL)                                                                 \
    F(S, STRV, dns, 32)                                                                            \
    F(S, JSON, storages, AGENT_STORE_MAX)
#define MSG_FIELDS_agent_destroy_sandbox(F, S)
/* spec: the amended OCI config.json; rootfs: guest path of the root (""
 * = spec root.path); storages as for create_sandbox, mounted first;
 * stdin: give init a stdin pipe; output_window: flow-control credit per
 * output stream in bytes (0 = AGENT_OUTPUT_WINDOW).  -> agent.pid */
#define MSG_FIELDS_agent_create_container(F, S)                                                    \
    F(S, STR, container_id, AGENT_ID_MAX)                                                          \
    F(S, JSON, spec, AGENT_SPEC_MAX)                                                               \
    F(S, STR, rootfs, MSG_PATH)                                                                    \
    F(S, JSON, storages, AGENT_STORE_MAX)                                                          \
    F(S, BOOL, stdin, 0)                                                                           \
    F(S, U64, output_window, 0)
#define MSG_FIELDS_agent_pid(F, S)             F(S, U64, pid, 0)
#define MSG_FIELDS_agent_start_container(F, S) F(S, STR, container_id, AGENT_ID_MAX)
/* Kills what still runs, waits up to timeout_ms (0 = 10 s), cleans up. */
#define MSG_FIELDS_agent_remove_container(F, S)                                                    \
    F(S, STR, container_id, AGENT_ID_MAX) F(S, U64, timeout_ms, 0)
/* process: an OCI process object (JSON).  -> agent.pid */
#define MSG_FIELDS_agent_exec_process(F, S)                                                        \
    F(S, STR, container_id, AGENT_ID_MAX)                                                          \
    F(S, STR, exec_id, AGENT_ID_MAX)                                                               \
    F(S, JSON, process, AGENT_PROC_MAX)                                                            \
    F(S, BOOL, stdin, 0)                                                                           \
    F(S, U64, output_window, 0)
/* all: every process of the container (with exec_id ""). */
#define MSG_FIELDS_agent_signal_process(F, S)                                                      \
    F(S, STR, container_id, AGENT_ID_MAX)                                                          \
    F(S, STR, exec_id, AGENT_ID_MAX)                                                               \
    F(S, U64, signal, 0)                                                                           \
    F(S, BOOL, all, 0)
/* Answered with agent.exit_status when the process has exited (and its
 * output has been drained, or 500 ms later). */
#define MSG_FIELDS_agent_wait_process(F, S)                                                        \
    F(S, STR, container_id, AGENT_ID_MAX) F(S, STR, exec_id, AGENT_ID_MAX)
/* status: exit code, or 128 + signal when killed. */
#define MSG_FIELDS_agent_exit_status(F, S)                                                         \
    F(S, STR, container_id, AGENT_ID_MAX)                                                          \
    F(S, STR, exec_id, AGENT_ID_MAX)                                                               \
    F(S, U64, pid, 0)                                                                              \
    F(S, I64, status, 0)
/* Event: a process exited (same fields as agent.exit_status). */
#define MSG_FIELDS_agent_exited(F, S)                                                              \
    F(S, STR, container_id, AGENT_ID_MAX)                                                          \
    F(S, STR, exec_id, AGENT_ID_MAX)                                                               \
    F(S, U64, pid, 0)                                                                              \
    F(S, I64, status, 0)
/* Queued to the process's stdin; answered with agent.written once all of
 * it reached the pipe.  At most 1 MiB may wait per process (ENOBUFS). */
#define MSG_FIELDS_agent_write_stdin(F, S)                                                         \
    F(S, STR, container_id, AGENT_ID_MAX)                                                          \
    F(S, STR, exec_id, AGENT_ID_MAX)                                                               \
    F(S, BIN, data, AGENT_CHUNK_MAX)
#define MSG_FIELDS_agent_written(F, S) F(S, U64, len, 0)
/* Closes stdin once what is queued has been written. */
#define MSG_FIELDS_agent_close_stdin(F, S)                                                         \
    F(S, STR, container_id, AGENT_ID_MAX) F(S, STR, exec_id, AGENT_ID_MAX)
/* Event: output of a process.  stream 1 = stdout (also the terminal), 2 =
 * stderr.  eof: the stream ended (data may be empty).  Each byte uses one
 * byte of the stream's credit; the guest stops reading a stream whose
 * credit is exhausted until agent.output_ack returns some. */
#define MSG_FIELDS_agent_output(F, S)                                                              \
    F(S, STR, container_id, AGENT_ID_MAX)                                                          \
    F(S, STR, exec_id, AGENT_ID_MAX)                                                               \
    F(S, U64, stream, 0)                                                                           \
    F(S, BIN, data, AGENT_CHUNK_MAX)                                                               \
    F(S, BOOL, eof, 0)
/* One-way (no reply): the host consumed bytes of a stream; returns credit. */
#define MSG_FIELDS_agent_output_ack(F, S)                                                          \
    F(S, STR, container_id, AGENT_ID_MAX)                                                          \
    F(S, STR, exec_id, AGENT_ID_MAX)                                                               \
    F(S, U64, stream, 0)                                                                           \
    F(S, U64, bytes, 0)
#define MSG_FIELDS_agent_tty_resize(F, S)                                                          \
    F(S, STR, container_id, AGENT_ID_MAX)                                                          \
    F(S, STR, exec_id, AGENT_ID_MAX)                                                               \
    F(S, U64, rows, 0)                                                                             \
    F(S, U64, cols, 0)
/* cgroup v2 freezer. */
#define MSG_FIELDS_agent_pause_container(F, S)  F(S, STR, container_id, AGENT_ID_MAX)
#define MSG_FIELDS_agent_resume_container(F, S) F(S, STR, container_id, AGENT_ID_MAX)
/* resources: an OCI linux.resources object (JSON). */
#define MSG_FIELDS_agent_update_container(F, S)                                                    \
    F(S, STR, container_id, AGENT_ID_MAX) F(S, JSON, resources, AGENT_STORE_MAX)
/* -> agent.stats: cgroup v2 numbers; `present` names the ones read. */
#define MSG_FIELDS_agent_stats_container(F, S) F(S, STR, container_id, AGENT_ID_MAX)
#define MSG_FIELDS_agent_stats(F, S)                                                               \
    F(S, U64, cpu_usage_usec, 0)                                                                   \
    F(S, U64, cpu_user_usec, 0)                                                                    \
    F(S, U64, cpu_system_usec, 0)                                                                  \
    F(S, U64, memory_current, 0)                                                                   \
    F(S, U64, memory_max, 0)                                                                       \
    F(S, U64, memory_oom_kills, 0)                                                                 \
    F(S, U64, pids_current, 0)                                                                     \
    F(S, U64, io_read_bytes, 0)                                                                    \
    F(S, U64, io_write_bytes, 0)                                                                   \
    F(S, BOOL, frozen, 0)                                                                          \
    F(S, STRV, present, 16)
/* -> agent.processes: guest pids of the container's processes. */
#define MSG_FIELDS_agent_list_processes(F, S) F(S, STR, container_id, AGENT_ID_MAX)
#define MSG_FIELDS_agent_processes(F, S)      F(S, U64V, pids, 65536)
/* Event: the kernel OOM-killed a process of the container. */
#define MSG_FIELDS_agent_oom(F, S) F(S, STR, container_id, AGENT_ID_MAX) F(S, U64, oom_kills, 0)
/* Mounts 9p shares (storages as for create_sandbox). */
#define MSG_FIELDS_agent_mount_storages(F, S) F(S, JSON, storages, AGENT_STORE_MAX)
/* Event (host side only): the agent channel is gone; pending requests
 * failed with ECONNRESET and new ones fail with ENOTCONN. */
#define MSG_FIELDS_agent_lost(F, S) F(S, STR, reason, MSG_SMALL) F(S, U64, pending, 0)
/* Networking (docs/networking.md, agent/guest/net.h).  interface: {"name",
 * "mac", "mtu", "addresses": ["10.0.0.2/24", ...]}; the guest finds the NIC
 * by MAC (retrying up to 10 s while a hot-plugged one appears), renames,
 * sets MTU and exactly these addresses, up -> agent.interface.  routes:
 * [{"dest", "gateway", "source", "device", "scope", "metric"}] -> agent.routes.
 * neighbors: [{"ip", "mac", "device", "state"}] -> agent.ok.  list_* answer
 * with the same shapes. */
#define MSG_FIELDS_agent_update_interface(F, S)  F(S, JSON, interface, AGENT_NET_MAX)
#define MSG_FIELDS_agent_interface(F, S)         F(S, JSON, interface, AGENT_NET_MAX)
#define MSG_FIELDS_agent_update_routes(F, S)     F(S, JSON, routes, AGENT_NET_MAX)
#define MSG_FIELDS_agent_add_arp_neighbors(F, S) F(S, JSON, neighbors, AGENT_NET_MAX)
#define MSG_FIELDS_agent_list_interfaces(F, S)
#define MSG_FIELDS_agent_interfaces(F, S) F(S, JSON, interfaces, AGENT_NET_MAX)
#define MSG_FIELDS_agent_list_routes(F, S)
#define MSG_FIELDS_agent_routes(F, S) F(S, JSON, routes, AGENT_NET_MAX)
/* ---- end of agent ------------------------------------------------------ */

/* ---- rt: the runtime handler (actor "runtime") --------------------------
 * Front ends (the husk CLI, the shim service) ask the runtime; it drives
 * resources -> hypervisor -> agent -> persist.  Ids as for agent.*.
 * Success is rt.ok unless a reply type is named; failures are bus.error
 * with runc's wording in status_text (docs/runtime.md). */
#define RT_ID_MAX 64
/* spec: the bundle's config.json text.  proxy_pid: the host process that
 * stands for the container (written to --pid-file).  -> rt.created */
#define MSG_FIELDS_rt_create(F, S)                                                                 \
    F(S, STR, id, RT_ID_MAX)                                                                       \
    F(S, STR, bundle, MSG_PATH)                                                                    \
    F(S, JSON, spec, AGENT_SPEC_MAX)                                                               \
    F(S, U64, proxy_pid, 0)                                                                        \
    F(S, STR, pid_file, MSG_PATH)                                                                  \
    F(S, BOOL, console, 0)                                                                         \
    F(S, U64, owner_uid, 0)
#define MSG_FIELDS_rt_created(F, S)                                                                \
    F(S, STR, id, RT_ID_MAX) F(S, STR, sandbox_id, RT_ID_MAX) F(S, U64, pid, 0)
#define MSG_FIELDS_rt_ok(F, S)    F(S, STR, id, RT_ID_MAX)
#define MSG_FIELDS_rt_start(F, S) F(S, STR, id, RT_ID_MAX)
/* exec_id "" = the init process; all = every process of the container. */
#define MSG_FIELDS_rt_kill(F, S)                                                                   \
    F(S, STR, id, RT_ID_MAX) F(S, STR, exec_id, RT_ID_MAX) F(S, U64, signal, 0) F(S, BOOL, all, 0)
#define MSG_FIELDS_rt_delete(F, S) F(S, STR, id, RT_ID_MAX) F(S, BOOL, force, 0)
/* process: an OCI process object (JSON). */
#define MSG_FIELDS_rt_exec(F, S)                                                                   \
    F(S, STR, id, RT_ID_MAX)                                                                       \
    F(S, STR, exec_id, RT_ID_MAX)                                                                  \
    F(S, JSON, process, AGENT_PROC_MAX)                                                            \
    F(S, U64, proxy_pid, 0)                                                                        \
    F(S, BOOL, console, 0)
#define MSG_FIELDS_rt_pause(F, S)  F(S, STR, id, RT_ID_MAX)
#define MSG_FIELDS_rt_resume(F, S) F(S, STR, id, RT_ID_MAX)
/* -> rt.processes (guest pids) */
#define MSG_FIELDS_rt_ps(F, S)        F(S, STR, id, RT_ID_MAX)
#define MSG_FIELDS_rt_processes(F, S) F(S, STR, id, RT_ID_MAX) F(S, U64V, pids, 65536)
/* resources: OCI linux.resources (JSON) */
#define MSG_FIELDS_rt_update(F, S) F(S, STR, id, RT_ID_MAX) F(S, JSON, resources, AGENT_STORE_MAX)
/* -> rt.stats: the runc `events --stats` data object (JSON) */
#define MSG_FIELDS_rt_stats_get(F, S) F(S, STR, id, RT_ID_MAX)
#define MSG_FIELDS_rt_stats(F, S)     F(S, STR, id, RT_ID_MAX) F(S, JSON, data, AGENT_STORE_MAX)
/* Answered with rt.exited once the process has exited. */
#define MSG_FIELDS_rt_wait(F, S) F(S, STR, id, RT_ID_MAX) F(S, STR, exec_id, RT_ID_MAX)
/* Event and reply: a process exited; status 128+signal when killed. */
#define MSG_FIELDS_rt_exited(F, S)                                                                 \
    F(S, STR, id, RT_ID_MAX)                                                                       \
    F(S, STR, exec_id, RT_ID_MAX)                                                                  \
    F(S, I64, status, 0)                                                                           \
    F(S, U64, exited_at_ns, 0)
/* Event: the container was OOM-killed. */
#define MSG_FIELDS_rt_oom(F, S) F(S, STR, id, RT_ID_MAX)
/* Event: container state changed (created, running, paused, stopped). */
#define MSG_FIELDS_rt_state_changed(F, S) F(S, STR, id, RT_ID_MAX) F(S, STR, state, MSG_SMALL)
/* Rescans the sandbox's network namespace (the one its spec named) and
 * follows it: interfaces added since (CNI ADD on a running pod) are
 * attached and hot-plugged, removed ones unplugged and detached; then the
 * guest's routes and neighbours are updated.  id: the sandbox or any of
 * its containers.  -> rt.ok.  Needs a machine with hotplug (q35; not
 * microvm); nothing to do with the local backend (the agent lives in the
 * namespace). */
#define MSG_FIELDS_rt_update_network(F, S) F(S, STR, id, RT_ID_MAX)
/* The daemon stops its sandbox (VM, resources) and exits. */
#define MSG_FIELDS_rt_shutdown(F, S) F(S, U64, timeout_ms, 0)

/* ---- hv: the hypervisor actor ("hypervisor") ----------------------------
 * Boots and stops the sandbox's VM (or, with the local backend, its agent
 * process).  The agent channel is a unix socket the agent actor connects
 * to.  -> hv.started */
#define MSG_FIELDS_hv_start(F, S)                                                                  \
    F(S, STR, sandbox_id, RT_ID_MAX)                                                               \
    F(S, STR, dir, MSG_PATH)                                                                       \
    F(S, U64, vcpus, 0)                                                                            \
    F(S, U64, memory_mib, 0)                                                                       \
    F(S, STR, share_dir, MSG_PATH)                                                                 \
    F(S, STR, share_tag, MSG_SMALL)                                                                \
    F(S, STR, netns, MSG_PATH)                                                                     \
    F(S, STR, kernel_params, MSG_PATH)                                                             \
    F(S, STRV, net_taps, 16)                                                                       \
    F(S, STRV, net_macs, 16)                                                                       \
    F(S, STRV, cgroup_dirs, 8)
#define MSG_FIELDS_hv_started(F, S)                                                                \
    F(S, U64, pid, 0)                                                                              \
    F(S, BOOL, in_cgroup, 0)                                                                       \
    F(S, STR, agent_socket, MSG_PATH)                                                              \
    F(S, STR, console_log, MSG_PATH)                                                               \
    F(S, STR, backend, MSG_SMALL)                                                                  \
    F(S, STR, accel, MSG_SMALL)
#define MSG_FIELDS_hv_stop(F, S)    F(S, U64, timeout_ms, 0)
#define MSG_FIELDS_hv_stopped(F, S) F(S, I64, status, 0)
#define MSG_FIELDS_hv_pause(F, S)
#define MSG_FIELDS_hv_resume(F, S)
#define MSG_FIELDS_hv_ok(F, S)
/* kind: share-fs | block | network | vfio | vhost-user */
#define MSG_FIELDS_hv_add_device(F, S)                                                             \
    F(S, STR, kind, MSG_SMALL)                                                                     \
    F(S, STR, id, MSG_SMALL)                                                                       \
    F(S, STR, path, MSG_PATH)                                                                      \
    F(S, STR, tag, MSG_SMALL)                                                                      \
    F(S, BOOL, readonly, 0)                                                                        \
    F(S, STR, mac, MSG_SMALL)
#define MSG_FIELDS_hv_remove_device(F, S) F(S, STR, kind, MSG_SMALL) F(S, STR, id, MSG_SMALL)
/* Event: the VM (or local agent process) is gone. */
#define MSG_FIELDS_hv_exited(F, S)                                                                 \
    F(S, STR, sandbox_id, RT_ID_MAX)                                                               \
    F(S, U64, pid, 0) F(S, I64, status, 0) F(S, STR, reason, MSG_SMALL)

/* ---- agent.connect: the runtime points the agent actor at the channel ---- */
#define MSG_FIELDS_agent_connect(F, S) F(S, STR, socket, MSG_PATH) F(S, U64, timeout_ms, 0)

#define MSG_CATALOG_RT_HV(M)                                                                       \
    M(RT_CREATE, rt_create, "rt.create")                                                           \
    M(RT_CREATED, rt_created, "rt.created")                                                        \
    M(RT_OK, rt_ok, "rt.ok")                                                                       \
    M(RT_START, rt_start, "rt.start")                                                              \
    M(RT_KILL, rt_kill, "rt.kill")                                                                 \
    M(RT_DELETE, rt_delete, "rt.delete")                                                           \
    M(RT_EXEC, rt_exec, "rt.exec")                                                                 \
    M(RT_PAUSE, rt_pause, "rt.pause")                                                              \
    M(RT_RESUME, rt_resume, "rt.resume")                                                           \
    M(RT_PS, rt_ps, "rt.ps")                                                                       \
    M(RT_PROCESSES, rt_processes, "rt.processes")                                                  \
    M(RT_UPDATE, rt_update, "rt.update")                                                           \
    M(RT_STATS_GET, rt_stats_get, "rt.stats_get")                                                  \
    M(RT_STATS, rt_stats, "rt.stats")                                                              \
    M(RT_WAIT, rt_wait, "rt.wait")                                                                 \
    M(RT_EXITED, rt_exited, "rt.exited")                                                           \
    M(RT_OOM, rt_oom, "rt.oom")                                                                    \
    M(RT_STATE_CHANGED, rt_state_changed, "rt.state_changed")                                      \
    M(RT_SHUTDOWN, rt_shutdown, "rt.shutdown")                                                     \
    M(RT_UPDATE_NETWORK, rt_update_network, "rt.update_network")                                   \
    M(HV_START, hv_start, "hv.start")                                                              \
    M(HV_STARTED, hv_started, "hv.started")                                                        \
    M(HV_STOP, hv_stop, "hv.stop")                                                                 \
    M(HV_STOPPED, hv_stopped, "hv.stopped")                                                        \
    M(HV_PAUSE, hv_pause, "hv.pause")                                                              \
    M(HV_RESUME, hv_resume, "hv.resume")                                                           \
    M(HV_OK, hv_ok, "hv.ok")                                                                       \
    M(HV_ADD_DEVICE, hv_add_device, "hv.add_device")                                               \
    M(HV_REMOVE_DEVICE, hv_remove_device, "hv.remove_device")                                      \
    M(HV_EXITED, hv_exited, "hv.exited")                                                           \
    M(AGENT_CONNECT, agent_connect, "agent.connect")

/* ---- persist: the persist actor ("persist", persist/persist_actor.h) ----
 * Owns the daemon's state files (persist/store.h).  Records travel as the
 * text of the file they become (schema-versioned JSON, docs/state.md) and
 * are validated on receipt as a file is on load.  Writes happen in the
 * order received.  A save or remove is answered persist.saved once it is
 * on disk; a failure is persist.error (envelope status: errno and text).
 * A save that fails after the immediate retries is kept (the newest record
 * per file) and rewritten in the background: pending says so. */
#define PERSIST_RECORD_MAX (1024 * 1024)
#define PERSIST_LOADED_MAX (4 * 1024 * 1024)
/* record: sandbox.json text whose id is sandbox_id. */
#define MSG_FIELDS_persist_save_sandbox(F, S)                                                      \
    F(S, STR, sandbox_id, RT_ID_MAX) F(S, JSON, record, PERSIST_RECORD_MAX)
/* record: container.json text whose id and sandbox_id are these. */
#define MSG_FIELDS_persist_save_container(F, S)                                                    \
    F(S, STR, sandbox_id, RT_ID_MAX) F(S, STR, id, RT_ID_MAX) F(S, JSON, record, PERSIST_RECORD_MAX)
/* A missing container or sandbox is not an error. */
#define MSG_FIELDS_persist_remove_container(F, S)                                                  \
    F(S, STR, sandbox_id, RT_ID_MAX) F(S, STR, id, RT_ID_MAX)
#define MSG_FIELDS_persist_remove_sandbox(F, S) F(S, STR, sandbox_id, RT_ID_MAX)
/* -> persist.loaded: the sandbox record and its containers' (a JSON array
 * of container records, the sandbox's creation order first). */
#define MSG_FIELDS_persist_load(F, S) F(S, STR, sandbox_id, RT_ID_MAX)
#define MSG_FIELDS_persist_loaded(F, S)                                                            \
    F(S, STR, sandbox_id, RT_ID_MAX)                                                               \
    F(S, JSON, sandbox, PERSIST_RECORD_MAX)                                                        \
    F(S, JSON, containers, PERSIST_LOADED_MAX)
/* id: the container, "" for the sandbox record. */
#define MSG_FIELDS_persist_saved(F, S) F(S, STR, sandbox_id, RT_ID_MAX) F(S, STR, id, RT_ID_MAX)
#define MSG_FIELDS_persist_error(F, S)                                                             \
    F(S, STR, sandbox_id, RT_ID_MAX) F(S, STR, id, RT_ID_MAX) F(S, BOOL, pending, 0)

#define MSG_CATALOG_PERSIST(M)                                                                     \
    M(PERSIST_SAVE_SANDBOX, persist_save_sandbox, "persist.save_sandbox")                          \
    M(PERSIST_SAVE_CONTAINER, persist_save_container, "persist.save_container")                    \
    M(PERSIST_REMOVE_CONTAINER, persist_remove_container, "persist.remove_container")              \
    M(PERSIST_REMOVE_SANDBOX, persist_remove_sandbox, "persist.remove_sandbox")                    \
    M(PERSIST_LOAD, persist_load, "persist.load")                                                  \
    M(PERSIST_LOADED, persist_loaded, "persist.loaded")                                            \
    M(PERSIST_SAVED, persist_saved, "persist.saved")                                               \
    M(PERSIST_ERROR, persist_error, "persist.error")

/* ---- res: the resource manager (actor "resources", resources/resource_actor.h)
 * Owns what the sandbox holds on the host: its cgroup, the 9p share and the
 * per-container shares under it, the network endpoints (taps) in the pod's
 * namespace.  Success is res.ok unless a reply type is named.
 * prepare_sandbox: the cgroup (limits as given; named from root and
 * sandbox_id), and when vm: the share under dir and a tap per interface of
 * netns ("" = none).  adopt: take over what an earlier daemon of this
 * sandbox set up (cgroup by name, share under dir, taps named in taps with
 * the MACs in macs and the attach states in states, as res.sandbox_ready
 * gave them) without creating anything.  -> res.sandbox_ready */
#define RES_ID_MAX  64
#define RES_NET_MAX (64 * 1024)
#define MSG_FIELDS_res_prepare_sandbox(F, S)                                                       \
    F(S, STR, sandbox_id, RES_ID_MAX)                                                              \
    F(S, STR, root, MSG_PATH)                                                                      \
    F(S, STR, dir, MSG_PATH)                                                                       \
    F(S, BOOL, vm, 0)                                                                              \
    F(S, STR, netns, MSG_PATH)                                                                     \
    F(S, I64, memory_bytes, 0)                                                                     \
    F(S, I64, cpu_quota_us, 0)                                                                     \
    F(S, U64, cpu_period_us, 0)                                                                    \
    F(S, BOOL, adopt, 0)                                                                           \
    F(S, STRV, taps, 16)                                                                           \
    F(S, STRV, macs, 16)                                                                           \
    F(S, STRV, states, 16)
/* interfaces: JSON array of agent.update_interface bodies (one per tap, same
 * order); states: per tap, what undoing its attach needs (opaque to others:
 * kept for an adoption); routes, neighbors: the agent.update_routes /
 * add_arp_neighbors bodies; warnings: what was skipped (a cgroup limit the
 * host refused...). */
#define MSG_FIELDS_res_sandbox_ready(F, S)                                                         \
    F(S, STR, cgroup, MSG_PATH)                                                                    \
    F(S, STRV, cgroup_dirs, 8)                                                                     \
    F(S, STR, share_dir, MSG_PATH)                                                                 \
    F(S, STR, share_tag, MSG_SMALL)                                                                \
    F(S, STRV, taps, 16)                                                                           \
    F(S, STRV, macs, 16)                                                                           \
    F(S, STRV, states, 16)                                                                         \
    F(S, JSON, interfaces, RES_NET_MAX)                                                            \
    F(S, JSON, routes, RES_NET_MAX)                                                                \
    F(S, JSON, neighbors, RES_NET_MAX)                                                             \
    F(S, STRV, warnings, 64)
/* Moves a host process (the VMM) into the sandbox cgroup. */
#define MSG_FIELDS_res_add_pid(F, S) F(S, U64, pid, 0)
/* Shares the container's rootfs and bind mounts with the guest.  spec: the
 * bundle's config.json.  -> res.container_ready: rootfs, the guest path of
 * the root; spec, the config.json with root.path and mounts rewritten for
 * the guest. */
#define MSG_FIELDS_res_prepare_container(F, S)                                                     \
    F(S, STR, container_id, RES_ID_MAX) F(S, STR, bundle, MSG_PATH) F(S, JSON, spec, AGENT_SPEC_MAX)
#define MSG_FIELDS_res_container_ready(F, S)                                                       \
    F(S, STR, container_id, RES_ID_MAX) F(S, STR, rootfs, MSG_PATH) F(S, JSON, spec, AGENT_SPEC_MAX)
#define MSG_FIELDS_res_release_container(F, S) F(S, STR, container_id, RES_ID_MAX)
/* Rescans the namespace: new interfaces get a tap now (taps, macs,
 * interfaces as in res.sandbox_ready, for the new ones only); removed_taps
 * are the taps of interfaces that went, still in place until
 * res.release_endpoint (unplug them from the VM first).  routes and
 * neighbors: the namespace's now.  -> res.network_changes */
#define MSG_FIELDS_res_rescan_network(F, S)
#define MSG_FIELDS_res_network_changes(F, S)                                                       \
    F(S, STRV, removed_taps, 16)                                                                   \
    F(S, STRV, taps, 16)                                                                           \
    F(S, STRV, macs, 16)                                                                           \
    F(S, STRV, states, 16)                                                                         \
    F(S, JSON, interfaces, RES_NET_MAX)                                                            \
    F(S, JSON, routes, RES_NET_MAX)                                                                \
    F(S, JSON, neighbors, RES_NET_MAX)
/* Removes one tap (and its redirects). */
#define MSG_FIELDS_res_release_endpoint(F, S) F(S, STR, tap, MSG_SMALL)
/* Tears everything down (containers' shares, share, taps, cgroup: waiting
 * up to timeout_ms, 0 = 2 s, for it to empty).  Releasing twice is fine. */
#define MSG_FIELDS_res_release_sandbox(F, S) F(S, U64, timeout_ms, 0)
#define MSG_FIELDS_res_ok(F, S)

#define MSG_CATALOG_RES(M)                                                                         \
    M(RES_PREPARE_SANDBOX, res_prepare_sandbox, "res.prepare_sandbox")                             \
    M(RES_SANDBOX_READY, res_sandbox_ready, "res.sandbox_ready")                                   \
    M(RES_ADD_PID, res_add_pid, "res.add_pid")                                                     \
    M(RES_PREPARE_CONTAINER, res_prepare_container, "res.prepare_container")                       \
    M(RES_CONTAINER_READY, res_container_ready, "res.container_ready")                             \
    M(RES_RELEASE_CONTAINER, res_release_container, "res.release_container")                       \
    M(RES_RESCAN_NETWORK, res_rescan_network, "res.rescan_network")                                \
    M(RES_NETWORK_CHANGES, res_network_changes, "res.network_changes")                             \
    M(RES_RELEASE_ENDPOINT, res_release_endpoint, "res.release_endpoint")                          \
    M(RES_RELEASE_SANDBOX, res_release_sandbox, "res.release_sandbox")                             \
    M(RES_OK, res_ok, "res.ok")
/* ---- restore: a daemon re-attaches to a sandbox whose VMM outlived its
 * daemon (docs/state.md "Restore") ------------------------------------------
 * hv.attach: attach to the running VMM (qemu: QMP at <dir>/qmp.sock; local:
 * the agent process) whose pid and /proc starttime were persisted; refused
 * when that pid is gone or is another process now.  -> hv.started */
#define MSG_FIELDS_hv_attach(F, S)                                                                 \
    F(S, STR, sandbox_id, RT_ID_MAX)                                                               \
    F(S, STR, dir, MSG_PATH)                                                                       \
    F(S, STR, backend, MSG_SMALL)                                                                  \
    F(S, U64, pid, 0)                                                                              \
    F(S, U64, pid_start, 0)                                                                        \
    F(S, STR, netns, MSG_PATH)
/* agent.list_containers: what the guest knows, one entry per process (init
 * has exec_id ""), in parallel vectors of equal length.  state: created |
 * running | paused | stopped; pid: guest pid (0 when none); status: the
 * exit status (128+signal) when exited is set.  The host validates all of
 * it (runtimes/restore.h).  -> agent.containers */
#define AGENT_LIST_MAX 1024
#define MSG_FIELDS_agent_list_containers(F, S)
#define MSG_FIELDS_agent_containers(F, S)                                                          \
    F(S, STRV, container_ids, AGENT_LIST_MAX)                                                      \
    F(S, STRV, exec_ids, AGENT_LIST_MAX)                                                           \
    F(S, STRV, states, AGENT_LIST_MAX)                                                             \
    F(S, U64V, pids, AGENT_LIST_MAX)                                                               \
    F(S, U64V, exited, AGENT_LIST_MAX)                                                             \
    F(S, U64V, statuses, AGENT_LIST_MAX)

#define MSG_CATALOG_RESTORE(M)                                                                     \
    M(HV_ATTACH, hv_attach, "hv.attach")                                                           \
    M(AGENT_LIST_CONTAINERS, agent_list_containers, "agent.list_containers")                       \
    M(AGENT_CONTAINERS, agent_containers, "agent.containers")

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
    M(AGENT_OK, agent_ok, "agent.ok")                                                              \
    M(AGENT_CHECK, agent_check, "agent.check")                                                     \
    M(AGENT_HEALTH, agent_health, "agent.health")                                                  \
    M(AGENT_GUEST_DETAILS, agent_guest_details, "agent.guest_details")                             \
    M(AGENT_DETAILS, agent_details, "agent.details")                                               \
    M(AGENT_CREATE_SANDBOX, agent_create_sandbox, "agent.create_sandbox")                          \
    M(AGENT_DESTROY_SANDBOX, agent_destroy_sandbox, "agent.destroy_sandbox")                       \
    M(AGENT_CREATE_CONTAINER, agent_create_container, "agent.create_container")                    \
    M(AGENT_PID, agent_pid, "agent.pid")                                                           \
    M(AGENT_START_CONTAINER, agent_start_container, "agent.start_container")                       \
    M(AGENT_REMOVE_CONTAINER, agent_remove_container, "agent.remove_container")                    \
    M(AGENT_EXEC_PROCESS, agent_exec_process, "agent.exec_process")                                \
    M(AGENT_SIGNAL_PROCESS, agent_signal_process, "agent.signal_process")                          \
    M(AGENT_WAIT_PROCESS, agent_wait_process, "agent.wait_process")                                \
    M(AGENT_EXIT_STATUS, agent_exit_status, "agent.exit_status")                                   \
    M(AGENT_EXITED, agent_exited, "agent.exited")                                                  \
    M(AGENT_WRITE_STDIN, agent_write_stdin, "agent.write_stdin")                                   \
    M(AGENT_WRITTEN, agent_written, "agent.written")                                               \
    M(AGENT_CLOSE_STDIN, agent_close_stdin, "agent.close_stdin")                                   \
    M(AGENT_OUTPUT, agent_output, "agent.output")                                                  \
    M(AGENT_OUTPUT_ACK, agent_output_ack, "agent.output_ack")                                      \
    M(AGENT_TTY_RESIZE, agent_tty_resize, "agent.tty_resize")                                      \
    M(AGENT_PAUSE_CONTAINER, agent_pause_container, "agent.pause_container")                       \
    M(AGENT_RESUME_CONTAINER, agent_resume_container, "agent.resume_container")                    \
    M(AGENT_UPDATE_CONTAINER, agent_update_container, "agent.update_container")                    \
    M(AGENT_STATS_CONTAINER, agent_stats_container, "agent.stats_container")                       \
    M(AGENT_STATS, agent_stats, "agent.stats")                                                     \
    M(AGENT_LIST_PROCESSES, agent_list_processes, "agent.list_processes")                          \
    M(AGENT_PROCESSES, agent_processes, "agent.processes")                                         \
    M(AGENT_OOM, agent_oom, "agent.oom")                                                           \
    M(AGENT_MOUNT_STORAGES, agent_mount_storages, "agent.mount_storages")                          \
    M(AGENT_LOST, agent_lost, "agent.lost")                                                        \
    M(AGENT_UPDATE_INTERFACE, agent_update_interface, "agent.update_interface")                    \
    M(AGENT_INTERFACE, agent_interface, "agent.interface")                                         \
    M(AGENT_UPDATE_ROUTES, agent_update_routes, "agent.update_routes")                             \
    M(AGENT_ADD_ARP_NEIGHBORS, agent_add_arp_neighbors, "agent.add_arp_neighbors")                 \
    M(AGENT_LIST_INTERFACES, agent_list_interfaces, "agent.list_interfaces")                       \
    M(AGENT_INTERFACES, agent_interfaces, "agent.interfaces")                                      \
    M(AGENT_LIST_ROUTES, agent_list_routes, "agent.list_routes")                                   \
    M(AGENT_ROUTES, agent_routes, "agent.routes")                                                  \
    MSG_CATALOG_RT_HV(M)                                                                           \
    MSG_CATALOG_PERSIST(M)                                                                         \
    MSG_CATALOG_RES(M)                                                                             \
    MSG_CATALOG_RESTORE(M)                                                                         \
    M(FAULT_INJECT, fault_inject, "fault.inject")                                                  \
    M(TEST_ALL, test_all, "test.all")

#endif
