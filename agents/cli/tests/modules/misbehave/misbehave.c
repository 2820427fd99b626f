/* A module that misbehaves on purpose, one way per Mode, for the bad-input tests. */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    if (!strcmp(mode, "exit")) {
        fprintf(stderr, "misbehave: failing on purpose\n");
        return 7;
    }
    if (!strcmp(mode, "sleep")) {
        for (;;) sleep(1);
    }
    if (!strcmp(mode, "symlink")) {
        if (symlink("/etc/passwd", "/outputs/passwd") != 0) perror("symlink");
        FILE *f = fopen("/outputs/kept.txt", "w");
        if (f) { fputs("kept\n", f); fclose(f); }
        puts("wrote a symlink to /etc/passwd");
        return 0;
    }
    if (!strcmp(mode, "network")) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {0};
        a.sin_family = AF_INET;
        a.sin_port = htons(53);
        a.sin_addr.s_addr = htonl(0x01010101);
        if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof a) != 0) {
            printf("no network: %s\n", strerror(errno));
            return 0;
        }
        puts("NETWORK REACHED");
        return 9;
    }
    if (!strcmp(mode, "flood")) {
        static char buf[1 << 16];
        memset(buf, 'x', sizeof buf);
        for (long i = 0; i < 16384; i++) /* 1 GiB */
            if (write(1, buf, sizeof buf) < 0) return 3;
        return 0;
    }
    if (!strcmp(mode, "fork")) {
        long n = 0;
        for (;;) {
            pid_t p = fork();
            if (p == 0) { pause(); _exit(0); }
            if (p < 0) break;
            n++;
        }
        printf("fork failed after %ld children\n", n);
        return 0;
    }
    if (!strcmp(mode, "memory")) {
        for (;;) {
            char *p = malloc(1 << 20);
            if (!p) { puts("malloc failed"); return 0; }
            memset(p, 1, 1 << 20);
        }
    }
    if (!strcmp(mode, "bigout")) {
        static char buf[1 << 16];
        memset(buf, 'y', sizeof buf);
        FILE *f = fopen("/outputs/big", "w");
        long written = 0;
        while (f && fwrite(buf, 1, sizeof buf, f) == sizeof buf && fflush(f) == 0) written += sizeof buf;
        printf("outputs full after %ld bytes\n", written);
        return 0;
    }
    fprintf(stderr, "unknown mode %s\n", mode);
    return 2;
}
