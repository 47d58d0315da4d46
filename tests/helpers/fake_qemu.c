/* fake_qemu: stands in for qemu-system-* in the qemu backend's tests.
 * Like qemu started by hypervisors/qemu.c it finds its QMP listening
 * socket on fd 3 and the agent's on fd 4, ignores its command line, and
 * speaks enough QMP (one JSON object a line) for the backend: greeting,
 * qmp_capabilities, stop/cont (STOP/RESUME events), quit (SHUTDOWN, exit
 * 0), device_add/device_del (DEVICE_DELETED), blockdev-add/-del,
 * netdev_add/_del; anything else gets a CommandNotFound error.
 *
 * FAKE_QEMU_MODE in the environment changes it:
 *   die          print "fake_qemu: boom" on stderr, exit 1 at once
 *   garbage      greet with a line that is not JSON
 *   silent       accept and never greet
 *   ignore-quit  answer quit but stay alive (the kill timer must act)
 * Like qemu's server chardev, it accepts the next QMP client when one goes
 * away without quit (a restarted daemon re-attaching).
 * Device ids starting with "fail" make device_add fail, node names or
 * netdev ids containing "bad" make the backend step fail, and ids
 * starting with "stuck" are never reported deleted. */
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static FILE *out;

static void send_json(json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT);
    fprintf(out, "%s\r\n", s);
    fflush(out);
    free(s);
    json_decref(j);
}

static void reply(json_t *id, json_t *ret)
{
    json_t *r = json_pack("{s:o}", "return", ret ? ret : json_object());
    if (id)
        json_object_set(r, "id", id);
    send_json(r);
}

static void reply_err(json_t *id, const char *cls, const char *desc)
{
    json_t *r = json_pack("{s:{s:s,s:s}}", "error", "class", cls, "desc", desc);
    if (id)
        json_object_set(r, "id", id);
    send_json(r);
}

static void event(const char *name, json_t *data)
{
    send_json(json_pack("{s:s,s:o,s:{s:i,s:i}}", "event", name, "data",
                        data ? data : json_object(), "timestamp", "seconds", 1, "microseconds",
                        0));
}

static const char *arg_str(json_t *args, const char *key)
{
    const char *v = json_string_value(json_object_get(args, key));
    return v ? v : "";
}

int main(void)
{
    const char *mode = getenv("FAKE_QEMU_MODE");
    mode = mode ? mode : "";
    if (!strcmp(mode, "die")) {
        fprintf(stderr, "fake_qemu: starting\nfake_qemu: boom\n");
        return 1;
    }
    bool quit = false;
next_client:;
    int fd = accept(3, NULL, NULL);
    if (fd < 0) {
        perror("fake_qemu: accept on fd 3");
        return 2;
    }
    out = fdopen(fd, "w");
    FILE *in = fdopen(dup(fd), "r");
    if (!out || !in)
        return 2;
    if (!strcmp(mode, "silent")) {
        char c;
        while (read(fd, &c, 1) > 0)
            ;
        return 0;
    }
    if (!strcmp(mode, "garbage")) {
        fprintf(out, "this is not QMP\r\n");
        fflush(out);
        char c;
        while (read(fd, &c, 1) > 0)
            ;
        return 0;
    }
    send_json(json_pack("{s:{s:{s:{s:i,s:i,s:i}},s:[]}}", "QMP", "version", "qemu", "major", 7,
                        "minor", 2, "micro", 0, "capabilities"));
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, in) > 0) {
        json_t *cmd = json_loads(line, 0, NULL);
        if (!cmd)
            continue;
        const char *ex = json_string_value(json_object_get(cmd, "execute"));
        json_t *id = json_object_get(cmd, "id");
        json_t *args = json_object_get(cmd, "arguments");
        ex = ex ? ex : "";
        if (!strcmp(ex, "qmp_capabilities")) {
            reply(id, NULL);
        } else if (!strcmp(ex, "stop")) {
            reply(id, NULL);
            event("STOP", NULL);
        } else if (!strcmp(ex, "cont")) {
            reply(id, NULL);
            event("RESUME", NULL);
        } else if (!strcmp(ex, "quit")) {
            reply(id, NULL);
            if (strcmp(mode, "ignore-quit")) {
                quit = true;
                event("SHUTDOWN", json_pack("{s:b,s:s}", "guest", 0, "reason", "host-qmp-quit"));
                json_decref(cmd);
                break;
            }
        } else if (!strcmp(ex, "device_add")) {
            if (!strncmp(arg_str(args, "id"), "fail", 4))
                reply_err(id, "GenericError", "Bus 'rp0' does not support hotplugging");
            else
                reply(id, NULL);
        } else if (!strcmp(ex, "device_del")) {
            reply(id, NULL);
            if (strncmp(arg_str(args, "id"), "stuck", 5))
                event("DEVICE_DELETED", json_pack("{s:s,s:s}", "device", arg_str(args, "id"),
                                                  "path", "/machine/peripheral/x"));
        } else if (!strcmp(ex, "blockdev-add") || !strcmp(ex, "netdev_add")) {
            const char *n = !strcmp(ex, "blockdev-add") ? arg_str(args, "node-name")
                                                        : arg_str(args, "id");
            if (strstr(n, "bad"))
                reply_err(id, "GenericError", "Could not open backend");
            else
                reply(id, NULL);
        } else if (!strcmp(ex, "blockdev-del") || !strcmp(ex, "netdev_del")) {
            reply(id, NULL);
        } else {
            char desc[128];
            snprintf(desc, sizeof desc, "The command %s has not been found", ex);
            reply_err(id, "CommandNotFound", desc);
        }
        json_decref(cmd);
    }
    free(line);
    if (!quit && strcmp(mode, "ignore-quit")) { /* the client went away */
        fclose(out);
        fclose(in);
        goto next_client;
    }
    if (!strcmp(mode, "ignore-quit"))
        for (;;)
            pause();
    return 0;
}
