/*
 * spandsp_rx: an independent DTMF judge for secure_pay's tests and benchmark.
 *
 * It drives spandsp's dtmf_rx (Debian libspandsp-dev 0.0.6), NOT our detector. Built at test/bench
 * time with `cc -O2 spandsp_rx.c -lspandsp` into the cargo target dir (never into the repo).
 *
 * Usage:
 *   spandsp_rx [-p] FILE|-          decode 8 kHz signed 16-bit little-endian mono PCM, print the digits
 *                                   on one line (empty line if none), fed in 20 ms (160-sample) chunks
 *   spandsp_rx -b REPS [-p] FILE    benchmark: decode FILE REPS times (fresh receiver each pass, 160-sample
 *                                   chunks), print "audio_s=<seconds of audio> cpu_s=<process CPU seconds>
 *                                   digits=<digits per pass>". Only the decode loop is timed (it
 *                                   includes dtmf_rx_init/free per pass, as ours includes new/drop).
 *   -p  permissive parameters: dtmf_rx_parms(s, FALSE, 14, 14, -50) (twist 14 dB either way,
 *       threshold -50 dBm0). Default: spandsp's own defaults (8 dB normal / 4 dB reverse twist,
 *       about -42 dBm0 threshold).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <spandsp.h>

#define CHUNK 160

static int16_t *read_all(const char *path, size_t *n_out)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (f == NULL) {
        perror(path);
        exit(2);
    }
    size_t cap = 1 << 16, n = 0;
    int16_t *buf = malloc(cap * sizeof(int16_t));
    if (buf == NULL)
        exit(2);
    for (;;) {
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap * sizeof(int16_t));
            if (buf == NULL)
                exit(2);
        }
        size_t got = fread(buf + n, sizeof(int16_t), cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    if (f != stdin)
        fclose(f);
    *n_out = n;
    return buf;
}

struct collect {
    char digits[65536];
    size_t len;
};

static void on_digits(void *user_data, const char *digits, int len)
{
    struct collect *c = user_data;
    for (int i = 0; i < len && c->len + 1 < sizeof(c->digits); i++)
        c->digits[c->len++] = digits[i];
    c->digits[c->len] = '\0';
}

static void decode(const int16_t *amp, size_t n, int permissive, int flush, struct collect *out)
{
    dtmf_rx_state_t *s = dtmf_rx_init(NULL, on_digits, out);
    if (s == NULL) {
        fprintf(stderr, "dtmf_rx_init failed\n");
        exit(2);
    }
    if (permissive)
        dtmf_rx_parms(s, FALSE, 14, 14, -50);
    for (size_t i = 0; i < n; i += CHUNK) {
        size_t len = n - i < CHUNK ? n - i : CHUNK;
        dtmf_rx(s, amp + i, (int) len);
    }
    /* Flush: a digit sounding at the very end is reported once the receiver sees silence. */
    int16_t zeros[CHUNK] = {0};
    for (int k = 0; flush && k < 4; k++)
        dtmf_rx(s, zeros, CHUNK);
    dtmf_rx_free(s);
}

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    int permissive = 0;
    long reps = 0;
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-p") == 0)
            permissive = 1;
        else if (strcmp(argv[i], "-b") == 0 && i + 1 < argc)
            reps = strtol(argv[++i], NULL, 10);
        else
            path = argv[i];
    }
    if (path == NULL) {
        fprintf(stderr, "usage: spandsp_rx [-p] [-b REPS] FILE|-\n");
        return 2;
    }
    size_t n = 0;
    int16_t *amp = read_all(path, &n);
    static struct collect c;
    if (reps <= 0) {
        decode(amp, n, permissive, 1, &c);
        printf("%s\n", c.digits);
        free(amp);
        return 0;
    }
    size_t digits_per_pass = 0;
    double t0 = cpu_now();
    for (long r = 0; r < reps; r++) {
        c.len = 0;
        c.digits[0] = '\0';
        decode(amp, n, permissive, 0, &c);
        digits_per_pass = c.len;
    }
    double t1 = cpu_now();
    printf("audio_s=%.6f cpu_s=%.9f digits=%zu\n", (double) n * (double) reps / 8000.0, t1 - t0,
           digits_per_pass);
    free(amp);
    return 0;
}
