//! A small U-Net (Ronneberger et al. 2015) in burn: an encoder of `depth` levels of two 3×3
//! convolutions and a 2×2 max-pool, a bottleneck, and a decoder of 2×2 transposed convolutions whose
//! output is concatenated with the encoder's skip connection before two more 3×3 convolutions; a
//! 1×1 convolution gives one logit per pixel. "Same" padding keeps the image size; no batch
//! normalisation (it costs more than it gives at this size on the CPU).
//!
//! The width doubles at every level: width 8 and depth 3 is 8-16-32-(64) channels, about 120 000
//! parameters. Input sides must be multiples of `2^depth`.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::PaddingConfig2d;
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

/// The shape of a [`UNet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UNetConfig {
    /// Input channels (1 for grey images).
    pub in_channels: usize,
    /// Channels of the first level; doubled at every level below.
    pub width: usize,
    /// Number of pooling levels.
    pub depth: usize,
}

impl UNetConfig {
    /// Builds the network with freshly initialised weights (He-uniform, burn's default) on
    /// `device`; seed the device first for reproducible weights.
    pub fn init(&self, device: &Device) -> UNet {
        let conv3 = |cin: usize, cout: usize| {
            Conv2dConfig::new([cin, cout], [3, 3])
                .with_padding(PaddingConfig2d::Same)
                .init(device)
        };
        let block = |cin: usize, cout: usize| ConvBlock {
            conv1: conv3(cin, cout),
            conv2: conv3(cout, cout),
        };
        let w = |level: usize| self.width << level;
        let mut encoder = Vec::with_capacity(self.depth);
        let mut cin = self.in_channels;
        for level in 0..self.depth {
            encoder.push(block(cin, w(level)));
            cin = w(level);
        }
        let bottleneck = block(cin, w(self.depth));
        let mut up = Vec::with_capacity(self.depth);
        let mut decoder = Vec::with_capacity(self.depth);
        for level in (0..self.depth).rev() {
            up.push(
                ConvTranspose2dConfig::new([w(level + 1), w(level)], [2, 2])
                    .with_stride([2, 2])
                    .init(device),
            );
            decoder.push(block(2 * w(level), w(level)));
        }
        UNet {
            encoder,
            pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
            bottleneck,
            up,
            decoder,
            head: Conv2dConfig::new([w(0), 1], [1, 1]).init(device),
        }
    }
}

/// Two 3×3 convolutions, each followed by a ReLU.
#[derive(Module, Debug)]
pub struct ConvBlock {
    conv1: Conv2d,
    conv2: Conv2d,
}

impl ConvBlock {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        relu(self.conv2.forward(relu(self.conv1.forward(x))))
    }
}

/// The U-Net: `[N, in_channels, H, W]` images to `[N, 1, H, W]` logits.
#[derive(Module, Debug)]
pub struct UNet {
    encoder: Vec<ConvBlock>,
    pool: MaxPool2d,
    bottleneck: ConvBlock,
    up: Vec<ConvTranspose2d>,
    decoder: Vec<ConvBlock>,
    head: Conv2d,
}

impl UNet {
    /// Logits of the foreground, `[N, 1, H, W]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut skips = Vec::with_capacity(self.encoder.len());
        let mut x = x;
        for block in &self.encoder {
            let y = block.forward(x);
            x = self.pool.forward(y.clone());
            skips.push(y);
        }
        x = self.bottleneck.forward(x);
        for (up, block) in self.up.iter().zip(&self.decoder) {
            let skip = skips.pop().expect("one skip per level");
            x = block.forward(Tensor::cat(vec![up.forward(x), skip], 1));
        }
        self.head.forward(x)
    }
}
