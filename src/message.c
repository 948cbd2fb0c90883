#include "autoconf.h"
#include "message.h"
