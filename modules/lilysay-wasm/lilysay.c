/*
 * lilysay: a frog on a lily pad says your message, cowsay-style.
 *
 *   lilysay [WORD...]      (no words: "Hello, Lilypad!")
 *
 * The words are joined with spaces, word-wrapped to at most 40 columns (longer words are cut;
 * newlines in the message start new lines; other control characters print as '?') and put in
 * a speech bubble above the frog. The picture goes to stdout and, byte for byte the same, to
 * /outputs/lilysay.txt. Same message, same bytes: no clock, locale or randomness is involved.
 *
 * Built statically (cc -static -Os -o lilysay lilysay.c) to run in a FROM scratch image.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WIDTH 40
#ifndef OUTPUT
#define OUTPUT "/outputs/lilysay.txt"
#endif
#define DEFAULT_MESSAGE "Hello, Lilypad!"

static const char FROG[] =
    "        \\\n"
    "         \\       @..@\n"
    "          \\     (----)\n"
    "               ( >__< )\n"
    "        .------^^-~~-^^------.\n"
    "      .'   ~        ~    ~    '.\n"
    "     (  ~     ~   \\    /   ~    )\n"
    "      '.    ~      \\  /  ~    .'\n"
    "        '-._________\\/_____.-'\n"
    "   ~~~   ~~~~   ~~~    ~~~~   ~~~\n";

/* A growable byte string. */
struct buf {
    char *p;
    size_t len, cap;
};

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (q == NULL) {
        fputs("lilysay: out of memory\n", stderr);
        exit(2);
    }
    return q;
}

static void put(struct buf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->p = xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void puts_(struct buf *b, const char *s) { put(b, s, strlen(s)); }

static void repeat(struct buf *b, char c, size_t n) {
    while (n--) put(b, &c, 1);
}

/* Columns of UTF-8 text: one per code point (continuation bytes take none). */
static size_t columns(const char *s, size_t n) {
    size_t cols = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80) cols++;
    return cols;
}

/* Bytes of the first `cols` columns of s[0..n). */
static size_t prefix_bytes(const char *s, size_t n, size_t cols) {
    size_t i = 0, seen = 0;
    while (i < n) {
        if (((unsigned char)s[i] & 0xC0) != 0x80) {
            if (seen == cols) break;
            seen++;
        }
        i++;
    }
    return i;
}

/* The wrapped lines. */
struct lines {
    struct buf *v;
    size_t n;
};

static struct buf *new_line(struct lines *l) {
    l->v = xrealloc(l->v, (l->n + 1) * sizeof *l->v);
    l->v[l->n] = (struct buf){0};
    put(&l->v[l->n], "", 0);
    return &l->v[l->n++];
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; }

/* Wraps one paragraph (no '\n' in it) into lines of at most WIDTH columns. */
static void wrap(struct lines *l, const char *s, size_t n) {
    struct buf *cur = new_line(l);
    size_t cur_cols = 0;
    size_t i = 0;
    for (;;) {
        while (i < n && is_space(s[i])) i++;
        if (i == n) break;
        size_t start = i;
        while (i < n && !is_space(s[i])) i++;
        const char *w = s + start;
        size_t wlen = i - start, wcols = columns(w, wlen);
        while (wcols > WIDTH) { /* a word longer than a line: cut it (some of it is left) */
            if (cur_cols > 0) {
                cur = new_line(l);
                cur_cols = 0;
            }
            size_t take = prefix_bytes(w, wlen, WIDTH);
            put(cur, w, take);
            cur = new_line(l);
            w += take;
            wlen -= take;
            wcols -= WIDTH;
        }
        if (cur_cols > 0 && cur_cols + 1 + wcols > WIDTH) {
            cur = new_line(l);
            cur_cols = 0;
        }
        if (cur_cols > 0) {
            put(cur, " ", 1);
            cur_cols++;
        }
        put(cur, w, wlen);
        cur_cols += wcols;
    }
}

int main(int argc, char **argv) {
    /* The message: the arguments joined by spaces, control characters shown as '?'. */
    struct buf msg = {0};
    if (argc < 2) {
        puts_(&msg, DEFAULT_MESSAGE);
    } else {
        for (int a = 1; a < argc; a++) {
            if (a > 1) put(&msg, " ", 1);
            puts_(&msg, argv[a]);
        }
    }
    for (size_t i = 0; i < msg.len; i++) {
        unsigned char c = (unsigned char)msg.p[i];
        if ((c < 0x20 && c != '\n' && !is_space((char)c)) || c == 0x7F) msg.p[i] = '?';
    }
    while (msg.len > 0 && (msg.p[msg.len - 1] == '\n' || is_space(msg.p[msg.len - 1])))
        msg.p[--msg.len] = '\0';

    /* Wrap each paragraph. */
    struct lines lines = {0};
    size_t start = 0;
    for (size_t i = 0; i <= msg.len; i++) {
        if (i == msg.len || msg.p[i] == '\n') {
            wrap(&lines, msg.p + start, i - start);
            start = i + 1;
        }
    }

    size_t width = 0;
    for (size_t k = 0; k < lines.n; k++) {
        size_t c = columns(lines.v[k].p, lines.v[k].len);
        if (c > width) width = c;
    }

    /* The bubble, then the frog. */
    struct buf out = {0};
    put(&out, " ", 1);
    repeat(&out, '_', width + 2);
    put(&out, "\n", 1);
    for (size_t k = 0; k < lines.n; k++) {
        const char *left = "| ", *right = " |";
        if (lines.n == 1) left = "< ", right = " >";
        else if (k == 0) left = "/ ", right = " \\";
        else if (k == lines.n - 1) left = "\\ ", right = " /";
        puts_(&out, left);
        put(&out, lines.v[k].p, lines.v[k].len);
        repeat(&out, ' ', width - columns(lines.v[k].p, lines.v[k].len));
        puts_(&out, right);
        put(&out, "\n", 1);
    }
    put(&out, " ", 1);
    repeat(&out, '-', width + 2);
    put(&out, "\n", 1);
    puts_(&out, FROG);

    int status = 0;
    if (fwrite(out.p, 1, out.len, stdout) != out.len || fflush(stdout) != 0) {
        perror("lilysay: writing stdout");
        status = 1;
    }
    FILE *f = fopen(OUTPUT, "wb");
    if (f == NULL) {
        perror("lilysay: " OUTPUT);
        return 1;
    }
    if (fwrite(out.p, 1, out.len, f) != out.len || fclose(f) != 0) {
        perror("lilysay: writing " OUTPUT);
        return 1;
    }
    return status;
}
