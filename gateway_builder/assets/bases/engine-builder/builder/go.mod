module gateway-builder.local/builder

go 1.19
