//! 季度收入登记 quarterly income registration and the income formula of domain.md §1.8:
//! `net = wage + business_gross + property + transfer − business_cost`, and
//! `per_capita_net = net / household_size`. Amounts are in fen so sums are exact.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The five components a cadre records for one quarter, in fen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct IncomeComponents {
    /// 工资性收入.
    pub wage_fen: i64,
    /// 生产经营性收入 (gross).
    pub business_gross_fen: i64,
    /// 财产性收入.
    pub property_fen: i64,
    /// 转移性收入.
    pub transfer_fen: i64,
    /// 生产经营性支出.
    pub business_cost_fen: i64,
}

/// Why an income registration cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IncomeError {
    #[error("收入项不能为负数 (income component {0} is negative)")]
    NegativeComponent(&'static str),
    #[error("家庭人口必须大于0 (household size must be at least 1)")]
    EmptyHousehold,
    #[error("季度必须是1到4 (quarter must be 1–4, got {0})")]
    BadQuarter(u32),
    #[error("金额超出范围 (amount overflows)")]
    Overflow,
}

impl IncomeComponents {
    /// 家庭纯收入: wage + business_gross + property + transfer − business_cost. May be negative
    /// when a business lost money, which is a real outcome and must not be clamped.
    pub fn net_fen(&self) -> Result<i64, IncomeError> {
        self.check_non_negative()?;
        self.wage_fen
            .checked_add(self.business_gross_fen)
            .and_then(|sum| sum.checked_add(self.property_fen))
            .and_then(|sum| sum.checked_add(self.transfer_fen))
            .and_then(|sum| sum.checked_sub(self.business_cost_fen))
            .ok_or(IncomeError::Overflow)
    }

    /// 人均纯收入: net divided by household size, rounded half away from zero to the fen.
    pub fn per_capita_net_fen(&self, household_size: u32) -> Result<i64, IncomeError> {
        if household_size == 0 {
            return Err(IncomeError::EmptyHousehold);
        }
        let net = i128::from(self.net_fen()?);
        let size = i128::from(household_size);
        let rounded = if net >= 0 {
            (2 * net + size) / (2 * size)
        } else {
            -((-2 * net + size) / (2 * size))
        };
        i64::try_from(rounded).map_err(|_| IncomeError::Overflow)
    }

    fn check_non_negative(&self) -> Result<(), IncomeError> {
        let named = [
            ("wage", self.wage_fen),
            ("business_gross", self.business_gross_fen),
            ("property", self.property_fen),
            ("transfer", self.transfer_fen),
            ("business_cost", self.business_cost_fen),
        ];
        match named.iter().find(|(_, amount)| *amount < 0) {
            Some((name, _)) => Err(IncomeError::NegativeComponent(name)),
            None => Ok(()),
        }
    }
}

/// One quarterly registration with its derived totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncomeRegistration {
    pub registration_id: String,
    pub household_id: String,
    pub year: i32,
    pub quarter: u32,
    pub household_size: u32,
    pub components: IncomeComponents,
    pub net_fen: i64,
    pub per_capita_net_fen: i64,
}

impl IncomeRegistration {
    /// Build a registration, deriving net and per-capita net with the formula. Values the
    /// phone sent for the derived fields are ignored on purpose: the server is the authority.
    pub fn new(
        registration_id: String,
        household_id: String,
        year: i32,
        quarter: u32,
        household_size: u32,
        components: IncomeComponents,
    ) -> Result<Self, IncomeError> {
        if !(1..=4).contains(&quarter) {
            return Err(IncomeError::BadQuarter(quarter));
        }
        Ok(Self {
            net_fen: components.net_fen()?,
            per_capita_net_fen: components.per_capita_net_fen(household_size)?,
            registration_id,
            household_id,
            year,
            quarter,
            household_size,
            components,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn components(
        wage: i64,
        business: i64,
        property: i64,
        transfer: i64,
        cost: i64,
    ) -> IncomeComponents {
        IncomeComponents {
            wage_fen: wage,
            business_gross_fen: business,
            property_fen: property,
            transfer_fen: transfer,
            business_cost_fen: cost,
        }
    }

    #[test]
    fn net_is_the_four_incomes_minus_business_cost() {
        // 务工 3,000 + 养殖 2,000 + 分红 150 + 低保 900 − 饲料 800 = 5,250 yuan.
        let income = components(300_000, 200_000, 15_000, 90_000, 80_000);
        assert_eq!(income.net_fen(), Ok(525_000));
        assert_eq!(income.per_capita_net_fen(3), Ok(175_000));
    }

    #[test]
    fn per_capita_rounds_half_away_from_zero_to_the_fen() {
        assert_eq!(components(100, 0, 0, 0, 0).per_capita_net_fen(3), Ok(33));
        assert_eq!(components(200, 0, 0, 0, 0).per_capita_net_fen(3), Ok(67));
        assert_eq!(components(0, 100, 0, 0, 200).per_capita_net_fen(3), Ok(-33));
    }

    #[test]
    fn a_business_loss_gives_a_negative_net() {
        assert_eq!(components(0, 10_000, 0, 0, 25_000).net_fen(), Ok(-15_000));
    }

    #[test]
    fn negative_components_zero_size_and_bad_quarters_are_errors() {
        assert_eq!(
            components(-1, 0, 0, 0, 0).net_fen(),
            Err(IncomeError::NegativeComponent("wage"))
        );
        assert_eq!(
            components(1, 0, 0, 0, 0).per_capita_net_fen(0),
            Err(IncomeError::EmptyHousehold)
        );
        let bad = IncomeRegistration::new(
            "r".into(),
            "h".into(),
            2026,
            5,
            3,
            IncomeComponents::default(),
        );
        assert_eq!(bad, Err(IncomeError::BadQuarter(5)));
        let overflow = components(i64::MAX, 1, 0, 0, 0);
        assert_eq!(overflow.net_fen(), Err(IncomeError::Overflow));
    }

    #[test]
    fn registration_derives_the_totals() {
        let registration = IncomeRegistration::new(
            "r1".into(),
            "h1".into(),
            2026,
            3,
            4,
            components(400_000, 0, 0, 120_000, 0),
        )
        .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(registration.net_fen, 520_000);
        assert_eq!(registration.per_capita_net_fen, 130_000);
    }
}
