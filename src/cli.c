#include "autoconf.h"
#include "cli.h"
