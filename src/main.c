#include "autoconf.h"
#include "log.h"
int main(int argc, char **argv) { (void)argc; log_init(argv[0]); return 0; }
