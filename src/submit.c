#include "autoconf.h"
#include "submit.h"
