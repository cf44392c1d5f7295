"""JPEG DCT-domain input ("Straight from JPEG", issue 13): the coefficient layout, packing and augmentation.

- ``cnnlab.dct.layout``: the conventions (zig-zag order, the orthonormal 8x8 DCT, JFIF YCbCr), the exact
  DCT-domain map of 4:4:4 / 4:2:2 chroma onto the 4:2:0 grid, and ``pack``/``unpack`` of the model input
  (384, H/16, W/16): 256 channels of pixel-unshuffled Y, then 64 Cb and 64 Cr.
- ``cnnlab.dct.augment``: batched flips and crops done on the coefficients themselves.

A plane is one component's coefficients, shape (64, block_rows, block_cols), index k in zig-zag order.
"""
