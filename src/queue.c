#include "autoconf.h"
#include "queue.h"
