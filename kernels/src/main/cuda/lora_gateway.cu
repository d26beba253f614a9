// The one translation unit of the fatbin: every kernel family is included here so nvcc runs its
// front end once per target instead of once per file (build.sh compiles only this file).
#include "attention/attention.cu"
#include "elementwise/elementwise.cu"
#include "gemm/gemm.cu"
#include "lora/lora.cu"
#include "norm/rmsnorm.cu"
#include "rope/rope.cu"
#include "sample/sample.cu"
