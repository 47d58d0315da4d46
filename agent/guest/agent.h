/* agent/guest/agent: the server of husk-agent.
 *
 * One thread, one libevent loop: the agent channel (framed envelopes,
 * agent/frame.h), a signalfd for SIGCHLD/SIGTERM/SIGINT, the stdio pipes or
 * pty masters of every container process, and an inotify descriptor for
 * cgroup v2 memory.events (OOM).  Requests are served as they come and
 * answered in their own time: most at once, agent.wait_process when the
 * process has exited and its output has been drained (at most 500 ms after
 * the exit), agent.write_stdin when the bytes reached the pipe,
 * agent.remove_container when the container's processes are gone.
 *
 * The agent reaps every child (it is init in the guest, and PID 1 of a
 * fresh pid namespace under the local backend); exits of container
 * processes go to their waiters and out as agent.exited events.
 *
 * Output flow control: each output stream (stdout, stderr) of a process has
 * a credit in bytes (create/exec output_window, default
 * AGENT_OUTPUT_WINDOW).  The agent reads a stream only while it has credit,
 * and stops reading every stream while the channel's send queue is above
 * half its bound, so one chatty process can neither starve the others nor
 * crowd out replies.  agent.output_ack returns credit.
 *
 * Every request is validated: ids match [A-Za-z0-9_.-]{1,64}, paths are
 * absolute without "..", JSON is parsed with bounds (oci/spec.h), and an
 * error is answered as a bus.error with an errno and a clear text. */
#ifndef HUSK_AGENT_GUEST_AGENT_H
#define HUSK_AGENT_GUEST_AGENT_H

#include <stdbool.h>
#include <sys/types.h>

#include "agent/frame.h"
#include "common/err.h"

#define AGENT_VERSION_STR HUSK_VERSION
#define AGENT_STDIN_MAX   (1024 * 1024) /* queued stdin bytes per process */

typedef struct agent_opts {
    int channel_fd;          /* the agent channel, non-blocking; owned by the agent */
    bool virtio_port;        /* EOF means "host not connected yet": wait, do not exit */
    const char *root;        /* directory for the agent's own state (created) */
    const char *cgroup_root; /* cgroup v2 directory for container cgroups, or NULL */
    bool init;               /* PID 1 of a guest VM (guest_details reports it) */
    /* A listening socket (the local backend's agent.sock), or <= 0 for none
     * (a zeroed opts has none).  When
     * set, the end of channel_fd is not the end of the agent: it accepts
     * the next host connection (a restarted daemon re-attaching), as a
     * virtio port waits for the host to reconnect.  Owned by the agent. */
    int listen_fd;
    /* The late-module loader (a child running at SCHED_IDLE), or 0: the
     * agent reaps it, and raises it to the normal policy when a request
     * waits for a device or LOADER_IDLE_MS after it serves, so that a busy
     * container cannot starve it. */
    pid_t late_loader;
} agent_opts_t;

/* Serves the channel until it ends (not in virtio_port mode), SIGTERM or
 * SIGINT, or agent.destroy_sandbox in local mode.  Kills and reaps the
 * containers' processes before returning.  Blocks SIGCHLD, SIGTERM and
 * SIGINT in the calling thread (signalfd).  Returns 0 or < 0 with err. */
int agent_serve(const agent_opts_t *opts, err_t *err);

/* True when s is a valid container or exec id (allow_empty: "" allowed). */
bool agent_id_valid(const char *s, bool allow_empty);

/* True when p is an absolute path without "." or ".." components. */
bool agent_path_valid(const char *p);

#endif
