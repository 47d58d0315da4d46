/* A --console-socket receiver, as conmon and containerd are: listens on a
 * unix SOCK_STREAM socket, accepts one connection, takes one fd from an
 * SCM_RIGHTS message, checks it is a pty master, then relays: what comes
 * out of the pty goes to stdout, INPUT (if given) is typed into it, and
 * with ROWSxCOLS the window is resized (TIOCSWINSZ on the master) after
 * the input was written.
 *
 * usage: console_recv SOCKET [INPUT [ROWSxCOLS]]
 * Prints "name=<payload> fd=pty" first, exits 0 once the pty side hangs
 * up (EIO), 1 on any error. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s SOCKET [INPUT [ROWSxCOLS]]\n", argv[0]);
        return 1;
    }
    int l = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", argv[1]);
    unlink(argv[1]);
    if (l < 0 || bind(l, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(l, 1) < 0) {
        perror("listen");
        return 1;
    }
    int c = accept(l, NULL, NULL);
    if (c < 0) {
        perror("accept");
        return 1;
    }
    char name[4096], cbuf[CMSG_SPACE(sizeof(int) * 4)];
    struct iovec iov = {name, sizeof name - 1};
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
    ssize_t n = recvmsg(c, &mh, 0);
    if (n < 0) {
        perror("recvmsg");
        return 1;
    }
    name[n] = 0;
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    if (!cm || cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS ||
        cm->cmsg_len != CMSG_LEN(sizeof(int))) {
        fprintf(stderr, "no single SCM_RIGHTS fd\n");
        return 1;
    }
    int fd;
    memcpy(&fd, CMSG_DATA(cm), sizeof fd);
    close(c);
    int ptn;
    struct termios t;
    int is_master = ioctl(fd, TIOCGPTN, &ptn) == 0 && tcgetattr(fd, &t) == 0;
    printf("name=%s fd=%s\n", name, is_master ? "pty" : "not-a-pty");
    fflush(stdout);
    if (!is_master)
        return 1;
    /* conmon: ONLCR on the master side */
    t.c_oflag |= ONLCR;
    tcsetattr(fd, TCSANOW, &t);
    if (argc > 2) {
        usleep(300000);
        if (write(fd, argv[2], strlen(argv[2])) < 0)
            perror("write");
    }
    if (argc > 3) {
        struct winsize ws = {0};
        sscanf(argv[3], "%hux%hu", &ws.ws_row, &ws.ws_col);
        usleep(300000);
        ioctl(fd, TIOCSWINSZ, &ws);
    }
    char buf[4096];
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 30000) <= 0)
            return 1;
        n = read(fd, buf, sizeof buf);
        if (n <= 0)
            return n < 0 && errno == EIO ? 0 : 0;
        fwrite(buf, 1, (size_t)n, stdout);
        fflush(stdout);
    }
}
