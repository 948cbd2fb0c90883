#include "autoconf.h"
#include "address.h"
