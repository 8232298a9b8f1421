/*
 * zero-config: checks a DeepSpeed-format config the way libzero reads it.
 *
 *   zero-config check FILE [--world-size N]
 *
 * Prints the effective configuration as JSON on stdout (defaults filled, the
 * batch triad resolved) and exits 0; otherwise prints every problem on stderr,
 * each with its dotted JSON path, and exits 2. Uses the public API only.
 */
#include <zero/zero.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXIT_CONFIG 2 /* the config was refused, or the command line is wrong */

static const char usage_text[] =
    "usage: zero-config check FILE [--world-size N]\n"
    "       zero-config --help | --version\n";

static const char help_text[] =
    "zero-config: check a DeepSpeed-format JSON config as libzero reads it.\n"
    "\n"
    "usage: zero-config check FILE [--world-size N]\n"
    "       zero-config --help | --version\n"
    "\n"
    "check FILE\n"
    "    Parses FILE (JSON; // /* */ and # comments allowed; \"auto\" means the\n"
    "    default) and validates every key. On success prints the effective\n"
    "    configuration as JSON on stdout: every key with its effective value,\n"
    "    defaults filled in, deprecated spellings mapped, the batch triad\n"
    "    (train_batch_size = train_micro_batch_size_per_gpu *\n"
    "    gradient_accumulation_steps * world size) resolved. Warnings go to\n"
    "    stderr. On failure prints every problem on stderr, one a line:\n"
    "        FILE:LINE:COLUMN: error: zero_optimization.stage: expected ...\n"
    "    with the dotted JSON path of the key (severity \"error\", or\n"
    "    \"unsupported\" for a DeepSpeed feature libzero does not implement).\n"
    "\n"
    "--world-size N\n"
    "    The data-parallel world size (number of ranks) to resolve the batch\n"
    "    triad against (1 or more). Without it the triad is resolved as far as\n"
    "    the file allows; a note on stderr gives the world size the file implies\n"
    "    (when it sets all three batch keys) or says what stays unresolved.\n"
    "\n"
    "Exit status: 0 config accepted; 2 config refused (errors, unsupported keys,\n"
    "unreadable file) or bad command line; 1 any other failure.\n"
    "Every key is documented in docs/config.md.\n";

static int bad_usage(const char *what, const char *arg)
{
    if (arg)
        fprintf(stderr, "zero-config: %s \"%s\"\n%s", what, arg, usage_text);
    else
        fprintf(stderr, "zero-config: %s\n%s", what, usage_text);
    return EXIT_CONFIG;
}

static int parse_world_size(const char *text, uint32_t *out)
{
    char *end;
    unsigned long long v;
    if (text == NULL || *text == '\0' || *text == '-' || *text == '+')
        return -1;
    errno = 0;
    v = strtoull(text, &end, 10);
    if (errno != 0 || *end != '\0' || v < 1 || v > 0x7fffffffULL)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

static void note_batch(const char *file, const zero_config_t *c, int world_size_given)
{
    if (world_size_given)
        return;
    if (c->world_size != 0) {
        fprintf(stderr, "%s: note: world size %u, implied by train_batch_size %llu = "
                "train_micro_batch_size_per_gpu %llu * gradient_accumulation_steps %llu * %u\n",
                file, c->world_size, (unsigned long long)c->train_batch_size,
                (unsigned long long)c->train_micro_batch_size_per_gpu,
                (unsigned long long)c->gradient_accumulation_steps, c->world_size);
        return;
    }
    fprintf(stderr, "%s: note: no --world-size given and the file implies none; unresolved:%s%s%s "
            "(train_batch_size = train_micro_batch_size_per_gpu * gradient_accumulation_steps * world size)\n",
            file, c->train_batch_size ? "" : " train_batch_size",
            c->train_micro_batch_size_per_gpu ? "" : " train_micro_batch_size_per_gpu",
            c->gradient_accumulation_steps ? "" : " gradient_accumulation_steps");
}

static int check(const char *file, uint32_t world_size)
{
    zero_config_t *config = NULL;
    char *problems = NULL, *json = NULL;
    zero_status_t status = zero_config_parse_file(file, world_size, &config, &problems);
    int rc;

    if (problems)
        fputs(problems, stderr); /* the library logged none of them: printed once, here */
    zero_string_free(problems);
    if (status != ZERO_OK) {
        if (status == ZERO_ERR_CONFIG || status == ZERO_ERR_UNSUPPORTED || status == ZERO_ERR_IO) {
            fprintf(stderr, "zero-config: %s: %s\n", file, zero_status_string(status));
            return EXIT_CONFIG;
        }
        fprintf(stderr, "zero-config: %s: %s\n", file, zero_status_string(status));
        return EXIT_FAILURE;
    }
    status = zero_config_to_json(config, &json);
    if (status != ZERO_OK) {
        fprintf(stderr, "zero-config: cannot render the config: %s\n", zero_status_string(status));
        zero_config_destroy(config);
        return EXIT_FAILURE;
    }
    rc = fputs(json, stdout) < 0 || fflush(stdout) != 0 ? EXIT_FAILURE : EXIT_SUCCESS;
    if (rc != EXIT_SUCCESS)
        fprintf(stderr, "zero-config: writing to stdout: %s\n", strerror(errno));
    note_batch(file, config, world_size != 0);
    zero_string_free(json);
    zero_config_destroy(config);
    return rc;
}

int main(int argc, char **argv)
{
    const char *file = NULL;
    uint32_t world_size = 0;
    int i;

    if (argc < 2)
        return bad_usage("missing command", NULL);
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        fputs(help_text, stdout);
        return EXIT_SUCCESS;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("zero-config (libzero) %s\n", zero_version());
        return EXIT_SUCCESS;
    }
    if (strcmp(argv[1], "check") != 0)
        return bad_usage("unknown command", argv[1]);
    for (i = 2; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            fputs(help_text, stdout);
            return EXIT_SUCCESS;
        }
        if (strcmp(arg, "--world-size") == 0 || strncmp(arg, "--world-size=", 13) == 0) {
            const char *value = arg[12] == '=' ? arg + 13 : (i + 1 < argc ? argv[++i] : NULL);
            if (value == NULL)
                return bad_usage("--world-size needs a value", NULL);
            if (parse_world_size(value, &world_size) != 0)
                return bad_usage("--world-size: expected an integer >= 1, got", value);
            continue;
        }
        if (arg[0] == '-' && arg[1] != '\0')
            return bad_usage("unknown option", arg);
        if (file != NULL)
            return bad_usage("more than one FILE given; extra:", arg);
        file = arg;
    }
    if (file == NULL)
        return bad_usage("check needs a FILE", NULL);
    return check(file, world_size);
}
