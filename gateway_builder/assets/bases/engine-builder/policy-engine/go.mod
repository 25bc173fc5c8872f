module gateway-builder.local/policy-engine

go 1.19
