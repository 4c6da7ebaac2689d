DROP TABLE node_kernels;
DROP TABLE nodes;
