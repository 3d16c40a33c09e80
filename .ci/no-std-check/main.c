/* CI only: calls the no_std static library (src/lib.rs) from C and reports the result. */
#include <stdint.h>
#include <stdio.h>

uint32_t e2m_no_std_check(void);

int main(void) {
    uint32_t failed_step = e2m_no_std_check();
    if (failed_step != 0) {
        printf("no_std check FAILED at step %u (see enum Failure in src/lib.rs)\n", failed_step);
        return 1;
    }
    puts("no_std check: e2m-aka, e2m-kdf and e2m-keyid linked without std or alloc; all results match their vectors");
    return 0;
}
