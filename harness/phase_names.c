#include "phase_names.h"

static const char *const phase_names[PB_PHASE_COUNT] = {
    [PB_PHASE_LOAD] = "load",       [PB_PHASE_H2D] = "h2d",
    [PB_PHASE_FWD] = "fwd",         [PB_PHASE_BWD] = "bwd",
    [PB_PHASE_COMM] = "comm",       [PB_PHASE_SYNC] = "sync",
    [PB_PHASE_OPT] = "opt",         [PB_PHASE_SCATTER] = "scatter",
    [PB_PHASE_REPLICATE] = "replicate", [PB_PHASE_GATHER] = "gather",
    [PB_PHASE_REDUCE] = "reduce",   [PB_PHASE_P2P] = "p2p",
    [PB_PHASE_BUBBLE] = "bubble",   [PB_PHASE_TP_COMM] = "tp_comm",
    [PB_PHASE_REDUCE_SCATTER] = "reduce_scatter", [PB_PHASE_ALLGATHER] = "allgather",
};

const char *pb_phase_name(pb_phase p)
{
    return (p >= 0 && p < PB_PHASE_COUNT) ? phase_names[p] : "unknown";
}
