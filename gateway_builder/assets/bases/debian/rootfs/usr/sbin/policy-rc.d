#!/bin/sh
# gateway-builder local base: never start services while installing packages in an image.
exit 101
