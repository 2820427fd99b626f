/*
 * hashchain: SHA-256 applied Rounds times, starting from the message.
 *
 *   hashchain ROUNDS [WORD...]     (no words: "Hello, Lilypad!")
 *
 * h0 = SHA-256(message), h(i+1) = SHA-256(h(i)); prints h(ROUNDS) in hex (h1 when ROUNDS is 1)
 * and writes the same line to /outputs/digest.txt. A CPU-bound job with a tiny output, the same
 * source built for a container (cc -static) and for WebAssembly (clang --target=wasm32-wasi),
 * to compare the two engines on the same work. Same input, same bytes.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef OUTPUT
#define OUTPUT "/outputs/digest.txt"
#endif
#define MAX_ROUNDS 1000000000UL

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void block(uint32_t h[8], const unsigned char p[64]) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = k + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
        uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        k = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += k;
}

static void sha256(const unsigned char *m, size_t n, unsigned char out[32]) {
    uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                     0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    unsigned char buf[128];
    size_t i = 0;
    for (; i + 64 <= n; i += 64) block(h, m + i);
    size_t rest = n - i;
    memset(buf, 0, sizeof buf);
    memcpy(buf, m + i, rest);
    buf[rest] = 0x80;
    size_t len = rest + 9 <= 64 ? 64 : 128;
    uint64_t bits = (uint64_t)n * 8;
    for (int j = 0; j < 8; j++) buf[len - 1 - j] = (unsigned char)(bits >> (8 * j));
    block(h, buf);
    if (len == 128) block(h, buf + 64);
    for (int j = 0; j < 8; j++) {
        out[4 * j] = (unsigned char)(h[j] >> 24);
        out[4 * j + 1] = (unsigned char)(h[j] >> 16);
        out[4 * j + 2] = (unsigned char)(h[j] >> 8);
        out[4 * j + 3] = (unsigned char)h[j];
    }
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fputs("usage: hashchain ROUNDS [WORD...]\n", stderr);
        return 2;
    }
    char *end;
    unsigned long rounds = strtoul(argv[1], &end, 10);
    if (*argv[1] == '\0' || *end != '\0' || rounds < 1 || rounds > MAX_ROUNDS) {
        fprintf(stderr, "hashchain: ROUNDS must be a whole number from 1 to %lu, not \"%s\"\n", MAX_ROUNDS, argv[1]);
        return 2;
    }
    /* The message: the words joined by spaces. */
    size_t n = 0;
    for (int a = 2; a < argc; a++) n += strlen(argv[a]) + 1;
    char *msg = malloc(n + 16);
    if (msg == NULL) {
        fputs("hashchain: out of memory\n", stderr);
        return 2;
    }
    msg[0] = '\0';
    if (argc < 3) strcpy(msg, "Hello, Lilypad!");
    for (int a = 2; a < argc; a++) {
        if (a > 2) strcat(msg, " ");
        strcat(msg, argv[a]);
    }
    unsigned char h[32];
    sha256((const unsigned char *)msg, strlen(msg), h);
    for (unsigned long r = 1; r < rounds; r++) sha256(h, 32, h);

    char line[80];
    for (int j = 0; j < 32; j++) sprintf(line + 2 * j, "%02x", h[j]);
    strcpy(line + 64, "\n");
    fputs(line, stdout);
    FILE *f = fopen(OUTPUT, "wb");
    if (f == NULL) {
        perror("hashchain: " OUTPUT);
        return 1;
    }
    if (fputs(line, f) == EOF || fclose(f) != 0) {
        perror("hashchain: writing " OUTPUT);
        return 1;
    }
    return 0;
}
