/*
 * A Lilypad WebAssembly module: greets its input, on stdout and in /outputs/result.txt.
 *
 * Built to WASI preview 1 by ./build.sh (clang --target=wasm32-wasi); the built app.wasm is
 * part of the module folder, so providers run exactly these bytes without a compiler. The
 * module sees /outputs (and /inputs when given), no network, a fixed clock and a seeded random
 * source. Whatever the program leaves in /outputs is the job's result.
 */
#include <stdio.h>

int main(int argc, char **argv) {
    const char *input = argc > 1 ? argv[1] : "world";

    printf("Hello, %s!\n", input);

    FILE *out = fopen("/outputs/result.txt", "w");
    if (out == NULL) {
        perror("/outputs/result.txt");
        return 1;
    }
    fprintf(out, "Hello, %s!\n", input);
    if (fclose(out) != 0) {
        perror("/outputs/result.txt");
        return 1;
    }
    return 0;
}
