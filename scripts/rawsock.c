/*
 * rawsock: the raw throughput of a loopback socket, the limit that
 * `make bench` compares QEMU's VFIO stop-copy throughput with.
 *
 *   rawsock tcp|unix BYTES [CHUNK]
 *
 * A child process listens (tcp on 127.0.0.1, port of the kernel's choosing,
 * or a unix stream socket in a fresh temporary directory), accepts one
 * connection and reads BYTES into a CHUNK-sized buffer (default 1 MiB),
 * then answers one byte.  The parent connects, writes BYTES in CHUNK-sized
 * write()s of a non-zero pattern, and waits for that byte.  The clock runs
 * from the first write to the answer, so the figure is end to end: all the
 * bytes are in the receiver's buffer.  Default socket options on both ends,
 * as QEMU uses them.
 *
 * Prints one JSON object: {"transport", "bytes", "chunk", "seconds",
 * "bytes_per_second"}.  Exits non-zero on any error.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int receiver(int lfd, uint64_t bytes, size_t chunk)
{
    char *buf = malloc(chunk);
    uint64_t got = 0;
    int fd;

    if (!buf) {
        die("malloc");
    }
    fd = accept(lfd, NULL, NULL);
    if (fd < 0) {
        die("accept");
    }
    while (got < bytes) {
        ssize_t n = read(fd, buf, chunk);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            fprintf(stderr, "rawsock: receiver: %s after %llu bytes\n",
                    n ? strerror(errno) : "EOF", (unsigned long long)got);
            return 1;
        }
        got += n;
    }
    if (write(fd, "k", 1) != 1) {
        die("write ack");
    }
    close(fd);
    return 0;
}

int main(int argc, char **argv)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    char dir[] = "/tmp/rawsock-XXXXXX";
    int is_unix, lfd, fd, status;
    uint64_t bytes, sent = 0;
    size_t chunk = 1 << 20;
    double t0, t1;
    char *buf, ack;
    pid_t pid;

    if (argc < 3 || argc > 4 ||
        (strcmp(argv[1], "tcp") && strcmp(argv[1], "unix"))) {
        fprintf(stderr, "usage: rawsock tcp|unix BYTES [CHUNK]\n");
        return 2;
    }
    is_unix = !strcmp(argv[1], "unix");
    bytes = strtoull(argv[2], NULL, 0);
    if (argc == 4) {
        chunk = strtoull(argv[3], NULL, 0);
    }
    if (!bytes || !chunk) {
        fprintf(stderr, "rawsock: BYTES and CHUNK must be positive\n");
        return 2;
    }

    memset(&ss, 0, sizeof(ss));
    if (is_unix) {
        struct sockaddr_un *sun = (struct sockaddr_un *)&ss;

        if (!mkdtemp(dir)) {
            die("mkdtemp");
        }
        sun->sun_family = AF_UNIX;
        snprintf(sun->sun_path, sizeof(sun->sun_path), "%s/s", dir);
        sslen = sizeof(*sun);
        lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    } else {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

        sin->sin_family = AF_INET;
        sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sslen = sizeof(*sin);
        lfd = socket(AF_INET, SOCK_STREAM, 0);
    }
    if (lfd < 0) {
        die("socket");
    }
    if (bind(lfd, (struct sockaddr *)&ss, sslen) < 0) {
        die("bind");
    }
    if (listen(lfd, 1) < 0) {
        die("listen");
    }
    if (!is_unix && getsockname(lfd, (struct sockaddr *)&ss, &sslen) < 0) {
        die("getsockname");
    }

    pid = fork();
    if (pid < 0) {
        die("fork");
    }
    if (!pid) {
        _exit(receiver(lfd, bytes, chunk));
    }
    close(lfd);

    buf = malloc(chunk);
    if (!buf) {
        die("malloc");
    }
    memset(buf, 0xa5, chunk);
    fd = socket(is_unix ? AF_UNIX : AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&ss, sslen) < 0) {
        die("connect");
    }

    t0 = now();
    while (sent < bytes) {
        size_t len = bytes - sent < chunk ? bytes - sent : chunk;
        ssize_t n = write(fd, buf, len);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            die("write");
        }
        sent += n;
    }
    if (read(fd, &ack, 1) != 1) {
        die("read ack");
    }
    t1 = now();
    close(fd);

    if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) ||
        WEXITSTATUS(status)) {
        fprintf(stderr, "rawsock: receiver failed\n");
        return 1;
    }
    if (is_unix) {
        unlink(((struct sockaddr_un *)&ss)->sun_path);
        rmdir(dir);
    }
    printf("{\"transport\": \"%s\", \"bytes\": %llu, \"chunk\": %zu, "
           "\"seconds\": %.6f, \"bytes_per_second\": %.0f}\n",
           argv[1], (unsigned long long)bytes, chunk, t1 - t0,
           bytes / (t1 - t0));
    return 0;
}
