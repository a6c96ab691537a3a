/* The README's first example: main attaches, spawns an echo process, sends it
 * a message and waits for the reply. Built by the install test against the
 * installed library (pkg-config otter). */
#include <otter/otter.h>
#include <stdio.h>
#include <string.h>

static void echo(void *arg)
{
    (void)arg;
    ot_msg_t *m;
    while (ot_receive(NULL, NULL, OT_INFINITY, &m) == 0) {
        if (ot_msg_tag(m) == OT_TAG_SHUTDOWN) {
            ot_msg_free(m);
            return;
        }
        ot_send(ot_msg_sender(m), ot_msg_tag(m), ot_msg_data(m), ot_msg_len(m));
        ot_msg_free(m);
    }
}

int main(void)
{
    ot_runtime_t *rt;
    int rc = ot_runtime_start(NULL, &rt);
    if (rc < 0) {
        fprintf(stderr, "start: %s\n", ot_strerror(rc));
        return 1;
    }
    ot_pid_t me, pid;
    ot_attach(&me);
    ot_spawn(echo, NULL, NULL, &pid);
    ot_send(pid, 1, "hi", 3);
    ot_msg_t *reply;
    rc = ot_receive(NULL, NULL, 1000, &reply);
    if (rc == 0) {
        printf("echo replied: %s\n", (const char *)ot_msg_data(reply));
        ot_msg_free(reply);
    } else {
        fprintf(stderr, "receive: %s\n", ot_strerror(rc));
    }
    ot_detach();
    return ot_runtime_stop(rt) == 0 && rc == 0 ? 0 : 1;
}
