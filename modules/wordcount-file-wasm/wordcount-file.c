/* wordcount-file: counts the lines, words and bytes of a file, or of every file in a folder
 * (walked in byte order of the names, sub-folders included), like `wc`. The job's input is
 * mounted read-only at the path given as the only argument (/inputs/Text); the counts go to
 * stdout and to /outputs/counts.txt. Deterministic: the same bytes give the same counts. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct counts { unsigned long long lines, words, bytes, files; };

static FILE *out;

static void emit(const char *fmt, const struct counts *c, const char *name) {
    printf(fmt, c->lines, c->words, c->bytes, name);
    if (out) fprintf(out, fmt, c->lines, c->words, c->bytes, name);
}

static int count_file(const char *path, const char *name, struct counts *total) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); return 1; }
    struct counts c = {0, 0, 0, 1};
    int ch, in_word = 0;
    while ((ch = getc(f)) != EOF) {
        c.bytes++;
        if (ch == '\n') c.lines++;
        int space = ch == ' ' || ch == '\n' || ch == '\t' || ch == '\r' || ch == '\v' || ch == '\f';
        if (space) in_word = 0;
        else if (!in_word) { in_word = 1; c.words++; }
    }
    int failed = ferror(f);
    fclose(f);
    if (failed) { fprintf(stderr, "%s: read error\n", path); return 1; }
    emit("%8llu %8llu %10llu %s\n", &c, name);
    total->lines += c.lines; total->words += c.words; total->bytes += c.bytes; total->files++;
    return 0;
}

static int byname(const struct dirent **a, const struct dirent **b) {
    return strcmp((*a)->d_name, (*b)->d_name);
}

static int walk(const char *path, const char *name, struct counts *total) {
    struct stat st;
    if (lstat(path, &st) != 0) { perror(path); return 1; }
    if (S_ISREG(st.st_mode)) return count_file(path, name, total);
    if (!S_ISDIR(st.st_mode)) return 0;
    struct dirent **entries;
    int n = scandir(path, &entries, NULL, byname), failed = 0;
    if (n < 0) { perror(path); return 1; }
    for (int i = 0; i < n; i++) {
        const char *e = entries[i]->d_name;
        if (strcmp(e, ".") != 0 && strcmp(e, "..") != 0) {
            size_t pl = strlen(path) + strlen(e) + 2, nl = strlen(name) + strlen(e) + 2;
            char *p = malloc(pl), *q = malloc(nl);
            if (!p || !q) { fputs("out of memory\n", stderr); exit(1); }
            snprintf(p, pl, "%s/%s", path, e);
            snprintf(q, nl, "%s%s%s", name, *name ? "/" : "", e);
            failed |= walk(p, q, total);
            free(p); free(q);
        }
        free(entries[i]);
    }
    free(entries);
    return failed;
}

int main(int argc, char **argv) {
    if (argc != 2) { fputs("usage: wordcount-file <file or folder>\n", stderr); return 2; }
    struct stat st;
    if (stat(argv[1], &st) != 0) { perror(argv[1]); return 1; }
    out = fopen("/outputs/counts.txt", "w");
    struct counts total = {0, 0, 0, 0};
    int failed = S_ISDIR(st.st_mode) ? walk(argv[1], "", &total) : count_file(argv[1], "(file)", &total);
    if (S_ISDIR(st.st_mode)) {
        char label[64];
        snprintf(label, sizeof label, "total (%llu files)", total.files);
        emit("%8llu %8llu %10llu %s\n", &total, label);
    }
    if (out && fclose(out) != 0) { perror("/outputs/counts.txt"); failed = 1; }
    return failed;
}
