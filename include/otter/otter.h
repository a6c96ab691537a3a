/* otter/otter.h: the umbrella header. */
#ifndef OTTER_OTTER_H
#define OTTER_OTTER_H

#include "otter/version.h"
#include "otter/error.h"
#include "otter/runtime.h"
#include "otter/process.h"
#include "otter/mailbox.h"
#include "otter/timer.h"
#include "otter/signal.h"
#include "otter/registry.h"
#include "otter/info.h"
#include "otter/sysmon.h"
#include "otter/dirty.h"

#endif
