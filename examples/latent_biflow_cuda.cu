// latent_biflow built by nvcc: the same program with the Cuda<float> backend available (--backend cuda, the default
// here). See latent_biflow.cpp.
#include "latent_biflow.cpp"
