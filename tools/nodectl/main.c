/* nodectl: parse, run one subcommand, map the outcome to the exit status. */
#include "tools/nodectl/nodectl.h"

int
main(int argc, char **argv)
{
    /* librdkafka's chatter stays out of a CLI's output unless it is an error. */
    na_log_set_level(NA_LOG_ERROR);

    struct nodectl_args a;
    cleanup_error struct na_error *err = NULL;
    int rc = nodectl_parse(argc, argv, &a, &err);
    if (rc < 0) {
        fprintf(stderr, "nodectl: %s\n", err->msg);
        nodectl_args_free(&a);
        return NODECTL_EXIT_USAGE;
    }
    if (a.help) {
        if (!a.cmd && a.group)
            nodectl_usage_group(stdout, a.group);
        else
            nodectl_usage(stdout, a.cmd);
        nodectl_args_free(&a);
        return NODECTL_EXIT_OK;
    }
    rc = a.cmd->run(&a, &err);
    nodectl_args_free(&a);
    if (rc < 0) {
        fprintf(stderr, "nodectl: %s\n", err ? err->msg : "failed");
        return nodectl_exit_code(err);
    }
    return rc;
}
