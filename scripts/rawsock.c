/*
 * rawsock: how fast a plain program moves bytes over a transport, the
 * limit that `make bench` compares QEMU's VFIO stop-copy throughput with.
 *
 *   rawsock TRANSPORT BYTES [CHUNK[,CHUNK...]] [PATH]
 *
 * TRANSPORT is one of
 *   tcp   a TCP connection on 127.0.0.1 (port of the kernel's choosing);
 *   unix  a unix stream socket in a fresh temporary directory;
 *   pipe  a pipe, as libvirt hands one to QEMU with fd: (default size);
 *   exec  a pipe into `/bin/sh -c 'cat > PATH'`, as QEMU's exec: runs it.
 * Sockets and pipes get the options that QEMU's migration code gives them
 * when VFIO devices take part: TCP_NODELAY on both ends of a TCP
 * connection, a 2 MiB send buffer asked for on the sending end of a unix
 * socket (SO_SNDBUF, which the kernel caps at net.core.wmem_max), pipes
 * grown to 1 MiB (F_SETPIPE_SZ, best effort as in QEMU).
 *
 * For each CHUNK (suffixes K and M), a receiver process reads BYTES in
 * CHUNK-sized read()s (for exec: cat writes them to PATH), while this
 * process writes BYTES of a non-zero pattern in CHUNK-sized write()s.
 * A CHUNK of W:R writes W and reads R bytes at a time: a reader whose
 * buffer stays in its core's cache can take big writes faster than one
 * that reads as much (on loopback TCP up to 1.3x).  The default list is
 * 32K,64K,256K,1M,4M and each of them but 256K again with 256 KiB reads,
 * QEMU's read size for device data; exec: takes no R.  The clock runs from the first write,
 * with the receiver connected and its buffer paged in, until the receiver
 * has taken the last byte (exec: until cat has exited), so the figure is
 * end to end, as bench.py's window of QEMU is.  The best chunk size depends on the transport
 * and the machine's caches: the limit is the best of them, that of the
 * best plain program, not of one guess.
 *
 * With RAWSOCK_TOUCH=1 in the environment, each side also copies each
 * chunk once, as a device's data_fd read and write do (copy_to_user() and
 * copy_from_user() in its driver): the writer copies it in from a buffer
 * of its own before writing it, the reader copies it out after reading
 * it, both with memcpy().  Not a limit: a measure of what the least
 * device costs on each side.
 *
 * Prints one JSON object: {"transport", "bytes", "best_chunk",
 * "best_read_chunk", "seconds", "bytes_per_second", "trials": [{"chunk",
 * "read_chunk", "seconds", "bytes_per_second"}...]}.  Exits non-zero on
 * any error.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_CHUNKS 16

static int touch;
static volatile uint8_t touch_sink;
/* RAWSOCK_TOUCH=1: the device's side of each copy, one chunk */
static char *touch_buf;
/* Shared with the receiver: when it took the last byte */
static volatile double *receiver_done;

enum transport { T_TCP, T_UNIX, T_PIPE, T_EXEC };

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

static size_t parse_size(const char *s)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 0);

    if (*end == 'K' || *end == 'k') {
        v <<= 10;
        end++;
    } else if (*end == 'M' || *end == 'm') {
        v <<= 20;
        end++;
    }
    if (*end || !v || v > (1ULL << 30)) {
        fprintf(stderr, "rawsock: bad chunk size '%s'\n", s);
        exit(2);
    }
    return v;
}

/*
 * Read BYTES from FD in CHUNK-sized reads; the exit status of a child.
 * Tells READY (a pipe) once its buffer is paged in, as a program that
 * waits for the data has it, and notes when it took the last byte.
 */
static int drain(int fd, uint64_t bytes, size_t chunk, int ready)
{
    char *buf = malloc(chunk);
    uint64_t got = 0;

    if (!buf) {
        die("malloc");
    }
    memset(buf, 0, chunk);
    if (write(ready, "", 1) != 1) {
        die("write ready");
    }
    close(ready);
    while (got < bytes) {
        ssize_t n = read(fd, buf, chunk);

        if (touch && n > 0) {
            memcpy(touch_buf, buf, n);
            touch_sink += touch_buf[n - 1];
        }

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
    *receiver_done = now();
    return 0;
}

/* Wait for the receiver to be ready to read */
static void wait_ready(int ready)
{
    char c;

    if (read(ready, &c, 1) != 1) {
        fprintf(stderr, "rawsock: receiver failed to start\n");
        exit(1);
    }
    close(ready);
}

static void send_all(int fd, char *buf, uint64_t bytes, size_t chunk)
{
    uint64_t sent = 0;

    while (sent < bytes) {
        size_t len = bytes - sent < chunk ? bytes - sent : chunk;
        ssize_t n;

        if (touch) {
            memcpy(buf, touch_buf, len);
        }
        n = write(fd, buf, len);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            die("write");
        }
        sent += n;
    }
}

static void no_delay(int fd)
{
    int one = 1;

    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0) {
        die("setsockopt TCP_NODELAY");
    }
}

/* As QEMU asks for its unix sockets; the kernel caps it at wmem_max */
static void grow_sndbuf(int fd)
{
    int size = 2 << 20;

    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size)) < 0) {
        die("setsockopt SO_SNDBUF");
    }
}

static void reap(pid_t pid)
{
    int status;

    if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) ||
        WEXITSTATUS(status)) {
        fprintf(stderr, "rawsock: receiver failed\n");
        exit(1);
    }
}

/*
 * One trial; returns the seconds from the first write, with the receiver
 * connected and waiting, until it has taken the last byte (exec: until
 * cat has exited)
 */
static double trial(enum transport t, uint64_t bytes, size_t chunk,
                    size_t rchunk, const char *path)
{
    struct sockaddr_storage ss;
    socklen_t sslen = 0;
    char dir[] = "/tmp/rawsock-XXXXXX";
    int lfd = -1, fd, p[2], rd[2] = { -1, -1 };
    double t0, t1;
    char *buf;
    pid_t pid;

    buf = malloc(chunk);
    if (!buf) {
        die("malloc");
    }
    memset(buf, 0xa5, chunk);
    if (touch) {
        size_t n = chunk > rchunk ? chunk : rchunk;

        touch_buf = malloc(n);
        if (!touch_buf) {
            die("malloc");
        }
        memset(touch_buf, 0x5a, n);
    }

    /* cat (exec:) cannot tell when it is ready or done */
    if (t != T_EXEC && pipe(rd) < 0) {
        die("pipe");
    }
    if (t == T_PIPE || t == T_EXEC) {
        if (pipe(p) < 0) {
            die("pipe");
        }
        /* As QEMU does; a pipe that stays at 64 KiB still works */
        fcntl(p[1], F_SETPIPE_SZ, 1 << 20);
        pid = fork();
        if (pid < 0) {
            die("fork");
        }
        if (!pid) {
            close(p[1]);
            if (t == T_PIPE) {
                close(rd[0]);
                _exit(drain(p[0], bytes, rchunk, rd[1]));
            }
            if (dup2(p[0], 0) < 0) {
                _exit(1);
            }
            close(p[0]);
            execl("/bin/sh", "sh", "-c", "exec cat > \"$0\"", path,
                  (char *)NULL);
            _exit(127);
        }
        close(p[0]);
        if (t == T_PIPE) {
            close(rd[1]);
            wait_ready(rd[0]);
        }
        t0 = now();
        send_all(p[1], buf, bytes, chunk);
        close(p[1]);
        reap(pid);
        t1 = t == T_PIPE ? *receiver_done : now();
        free(buf);
        free(touch_buf);
        touch_buf = NULL;
        return t1 - t0;
    }

    memset(&ss, 0, sizeof(ss));
    if (t == T_UNIX) {
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
    if (t == T_TCP && getsockname(lfd, (struct sockaddr *)&ss, &sslen) < 0) {
        die("getsockname");
    }

    pid = fork();
    if (pid < 0) {
        die("fork");
    }
    if (!pid) {
        int cfd = accept(lfd, NULL, NULL);

        if (cfd < 0) {
            die("accept");
        }
        if (t == T_TCP) {
            no_delay(cfd);
        }
        close(rd[0]);
        _exit(drain(cfd, bytes, rchunk, rd[1]));
    }
    close(lfd);
    close(rd[1]);

    fd = socket(t == T_UNIX ? AF_UNIX : AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&ss, sslen) < 0) {
        die("connect");
    }
    if (t == T_TCP) {
        no_delay(fd);
    } else {
        grow_sndbuf(fd);
    }
    wait_ready(rd[0]);
    t0 = now();
    send_all(fd, buf, bytes, chunk);
    reap(pid);
    t1 = *receiver_done;
    close(fd);
    free(buf);
    free(touch_buf);
    touch_buf = NULL;
    if (t == T_UNIX) {
        unlink(((struct sockaddr_un *)&ss)->sun_path);
        rmdir(dir);
    }
    return t1 - t0;
}

int main(int argc, char **argv)
{
    static const char *names[] = { "tcp", "unix", "pipe", "exec" };
    size_t chunks[MAX_CHUNKS], rchunks[MAX_CHUNKS];
    double secs[MAX_CHUNKS];
    const char *chunk_list = "32K,64K,256K,1M,4M,"
                             "32K:256K,64K:256K,1M:256K,4M:256K";
    const char *path = NULL;
    int nchunks = 0, best = 0, i;
    enum transport t;
    uint64_t bytes;
    char *list, *tok, *save;

    if (argc < 3 || argc > 5) {
        goto usage;
    }
    for (t = T_TCP; t <= T_EXEC; t++) {
        if (!strcmp(argv[1], names[t])) {
            break;
        }
    }
    if (t > T_EXEC) {
        goto usage;
    }
    bytes = strtoull(argv[2], NULL, 0);
    if (argc >= 4) {
        chunk_list = argv[3];
    }
    if (argc == 5) {
        path = argv[4];
    }
    if (!bytes || (t == T_EXEC) != (path != NULL)) {
        goto usage;
    }
    list = strdup(chunk_list);
    for (tok = strtok_r(list, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        if (nchunks == MAX_CHUNKS) {
            fprintf(stderr, "rawsock: at most %d chunk sizes\n", MAX_CHUNKS);
            return 2;
        }
        char *colon = strchr(tok, ':');

        if (colon) {
            *colon = '\0';
        }
        chunks[nchunks] = parse_size(tok);
        rchunks[nchunks] = colon ? parse_size(colon + 1) : chunks[nchunks];
        if (t == T_EXEC && rchunks[nchunks] != chunks[nchunks]) {
            continue;   /* cat reads as it reads */
        }
        nchunks++;
    }
    free(list);
    if (!nchunks) {
        goto usage;
    }

    receiver_done = mmap(NULL, sizeof(*receiver_done),
                         PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                         -1, 0);
    if (receiver_done == MAP_FAILED) {
        die("mmap");
    }
    touch = getenv("RAWSOCK_TOUCH") && !strcmp(getenv("RAWSOCK_TOUCH"), "1");
    /* The receiver of a connection that failed must not wait forever */
    signal(SIGPIPE, SIG_DFL);
    for (i = 0; i < nchunks; i++) {
        secs[i] = trial(t, bytes, chunks[i], rchunks[i], path);
        if (path) {
            unlink(path);
        }
        if (secs[i] < secs[best]) {
            best = i;
        }
    }

    printf("{\"transport\": \"%s\", \"bytes\": %llu, \"best_chunk\": %zu, "
           "\"best_read_chunk\": %zu, \"seconds\": %.6f, "
           "\"bytes_per_second\": %.0f, \"trials\": [",
           names[t], (unsigned long long)bytes, chunks[best], rchunks[best],
           secs[best], bytes / secs[best]);
    for (i = 0; i < nchunks; i++) {
        printf("%s{\"chunk\": %zu, \"read_chunk\": %zu, \"seconds\": %.6f, "
               "\"bytes_per_second\": %.0f}", i ? ", " : "", chunks[i],
               rchunks[i], secs[i], bytes / secs[i]);
    }
    printf("]}\n");
    return 0;

usage:
    fprintf(stderr, "usage: rawsock tcp|unix|pipe BYTES [CHUNK[,CHUNK...]]\n"
            "       rawsock exec BYTES CHUNK[,CHUNK...] PATH\n"
            "CHUNK: a size (K, M) or WRITE:READ sizes\n");
    return 2;
}
