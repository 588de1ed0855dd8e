"""Campaigns: plan the matrix (device × model × configuration), run it on the boards, resume it,
and store one cell file per measurement."""
