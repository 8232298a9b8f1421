/*
 * LR schedules against hand-computed values of DeepSpeed's formulas, and the
 * dynamic loss scaler against hand-derived overflow sequences.
 * Schedule tolerance: 1e-12 relative (double arithmetic on both sides).
 */
#include "test_main.h"
#include "optim/loss_scaler.h"
#include "optim/lr_schedule.h"

#include <math.h>

#define NEAR(got, want) CU_ASSERT(fabs((got) - (want)) <= 1e-12 * fabs(want) + 1e-15)

static void at(zero_lr_schedule_t *s, int64_t it)
{
    CU_ASSERT_EQUAL(zero_lr_schedule_step_to(s, it), ZERO_OK);
}

static void test_warmup_lr(void)
{
    zero_lr_schedule_params_t p;
    zero_lr_schedule_t s;
    zero_lr_schedule_defaults(&p, ZERO_LR_WARMUP);
    p.warmup_min_lr = 0.0;
    p.warmup_max_lr = 0.01;
    p.warmup_num_steps = 1000;
    CU_ASSERT_EQUAL_FATAL(zero_lr_schedule_init(&s, &p), ZERO_OK);
    CU_ASSERT_EQUAL(s.state.last_batch_iteration, -1);
    NEAR(zero_lr_schedule_lr(&s), 0.0);            /* before any step: warmup_min_lr */
    zero_lr_schedule_step(&s);                      /* iteration 0: log(1) = 0 */
    CU_ASSERT_EQUAL(s.state.last_batch_iteration, 0);
    NEAR(zero_lr_schedule_lr(&s), 0.0);
    at(&s, 9);                                      /* log(10)/log(1000) = 1/3 */
    NEAR(zero_lr_schedule_lr(&s), 0.01 / 3.0);
    at(&s, 99);                                     /* 2/3 */
    NEAR(zero_lr_schedule_lr(&s), 0.02 / 3.0);
    at(&s, 999);
    NEAR(zero_lr_schedule_lr(&s), 0.01);
    at(&s, 5000);
    NEAR(zero_lr_schedule_lr(&s), 0.01);
    {
        double m;
        CU_ASSERT_EQUAL(zero_lr_schedule_momentum(&s, &m), 0);
    }

    p.warmup_type = ZERO_WARMUP_LINEAR;
    p.warmup_min_lr = 0.001;
    p.warmup_max_lr = 0.011;
    p.warmup_num_steps = 10;
    CU_ASSERT_EQUAL_FATAL(zero_lr_schedule_init(&s, &p), ZERO_OK);
    NEAR(zero_lr_schedule_lr(&s), 0.001);
    at(&s, 0);
    NEAR(zero_lr_schedule_lr(&s), 0.001);
    at(&s, 5);
    NEAR(zero_lr_schedule_lr(&s), 0.006);
    at(&s, 10);
    NEAR(zero_lr_schedule_lr(&s), 0.011);

    /* warmup_num_steps below 2 becomes 2: log(2)/log(2) = 1 at iteration 1. */
    p.warmup_type = ZERO_WARMUP_LOG;
    p.warmup_num_steps = 1;
    CU_ASSERT_EQUAL_FATAL(zero_lr_schedule_init(&s, &p), ZERO_OK);
    at(&s, 0);
    NEAR(zero_lr_schedule_lr(&s), 0.001);
    at(&s, 1);
    NEAR(zero_lr_schedule_lr(&s), 0.011);
}

static void test_warmup_decay_lr(void)
{
    zero_lr_schedule_params_t p;
    zero_lr_schedule_t s;
    zero_lr_schedule_defaults(&p, ZERO_LR_WARMUP_DECAY);
    p.warmup_min_lr = 0.0;
    p.warmup_max_lr = 0.1;
    p.warmup_num_steps = 10;
    p.warmup_type = ZERO_WARMUP_LINEAR;
    p.total_num_steps = 110;
    CU_ASSERT_EQUAL_FATAL(zero_lr_schedule_init(&s, &p), ZERO_OK);
    at(&s, 3);
    NEAR(zero_lr_schedule_lr(&s), 0.03);
    at(&s, 10);                         /* (110 - 10) / (110 - 10) */
    NEAR(zero_lr_schedule_lr(&s), 0.1);
    at(&s, 60);
    NEAR(zero_lr_schedule_lr(&s), 0.05);
    at(&s, 109);
    NEAR(zero_lr_schedule_lr(&s), 0.001);
    at(&s, 110);
    NEAR(zero_lr_schedule_lr(&s), 0.0);
    at(&s, 200);                        /* clamped at 0 */
    NEAR(zero_lr_schedule_lr(&s), 0.0);
    p.total_num_steps = 0;
    CU_ASSERT_EQUAL(zero_lr_schedule_init(&s, &p), ZERO_ERR_INVALID_ARG);
}

static void test_warmup_cosine_lr(void)
{
    zero_lr_schedule_params_t p;
    zero_lr_schedule_t s;
    zero_lr_schedule_defaults(&p, ZERO_LR_WARMUP_COSINE);
    p.base_lr = 0.1;
    p.total_num_steps = 110;
    p.warmup_num_steps = 10;
    p.warmup_min_ratio = 0.1;
    p.cos_min_ratio = 0.01;
    p.warmup_type = ZERO_WARMUP_LINEAR;
    CU_ASSERT_EQUAL_FATAL(zero_lr_schedule_init(&s, &p), ZERO_OK);
    NEAR(zero_lr_schedule_lr(&s), 0.0);        /* DeepSpeed: get_lr() is [0.0] before the first step */
    at(&s, 0);
    NEAR(zero_lr_schedule_lr(&s), 0.01);       /* ratio 0.1 */
    at(&s, 5);
    NEAR(zero_lr_schedule_lr(&s), 0.055);      /* 0.1 + 0.5 * 0.9 */
    at(&s, 10);                                /* first cosine step: (1 + cos(pi/100))/2 */
    NEAR(zero_lr_schedule_lr(&s), 0.1 * 0.9997557473810371);
    at(&s, 59);                                /* halfway: 0.01 + 0.99 * 0.5 */
    NEAR(zero_lr_schedule_lr(&s), 0.0505);
    at(&s, 109);                               /* end: cos_min_ratio */
    NEAR(zero_lr_schedule_lr(&s), 0.001);

    p.warmup_type = ZERO_WARMUP_LOG;           /* log warmup, min ratio 0.1: it 9 -> log(10)/log(10) */
    CU_ASSERT_EQUAL_FATAL(zero_lr_schedule_init(&s, &p), ZERO_OK);
    at(&s, 9);
    NEAR(zero_lr_schedule_lr(&s), 0.1);
}

static void test_one_cycle(void)
{
    zero_lr_schedule_params_t p;
    zero_lr_schedule_t s;
    double mom = -1.0;
    zero_lr_schedule_defaults(&p, ZERO_LR_ONE_CYCLE);
    p.cycle_min_lr = 0.01;
    p.cycle_max_lr = 0.1;
    p.cycle_first_step_size = 10;              /* second: None -> 10; cycle of 20, ratio 0.5 */
    p.decay_step_size = 5;
    p.decay_lr_rate = 0.5;
    p.cycle_momentum = 1;
    p.cycle_min_mom = 0.8;
    p.cycle_max_mom = 0.9;
    p.decay_mom_rate = 0.1;
    CU_ASSERT_EQUAL_FATAL(zero_lr_schedule_init(&s, &p), ZERO_OK);
    NEAR(zero_lr_schedule_lr(&s), 0.01);
    CU_ASSERT_EQUAL(zero_lr_schedule_momentum(&s, &mom), 1);
    NEAR(mom, 0.8);
    zero_lr_schedule_step(&s);                 /* it 0: x = 0.05, scale 0.1 */
    NEAR(zero_lr_schedule_lr(&s), 0.019);
    zero_lr_schedule_momentum(&s, &mom);
    NEAR(mom, 0.89);
    at(&s, 9);                                 /* peak: scale 1 */
    NEAR(zero_lr_schedule_lr(&s), 0.1);
    zero_lr_schedule_momentum(&s, &mom);
    NEAR(mom, 0.8);
    at(&s, 14);                                /* x = 0.75: scale (0.75-1)/(0.5-1) = 0.5 */
    NEAR(zero_lr_schedule_lr(&s), 0.055);
    zero_lr_schedule_momentum(&s, &mom);
    NEAR(mom, 0.85);
    at(&s, 19);                                /* end of cycle: x = 0 */
    NEAR(zero_lr_schedule_lr(&s), 0.01);
    zero_lr_schedule_momentum(&s, &mom);
    NEAR(mom, 0.9);
    at(&s, 20);                                /* decay d = 1: 0.01 / (1 + 0.5 * 0.2) */
    NEAR(zero_lr_schedule_lr(&s), 0.01 / 1.1);
    zero_lr_schedule_momentum(&s, &mom);
    NEAR(mom, 0.9 * 1.02);
    at(&s, 29);                                /* d = 10: 0.01 / 2 */
    NEAR(zero_lr_schedule_lr(&s), 0.005);

    /* Uneven halves: first 6, second 2 (ratio 0.75). it 6: x = 7/8, scale 0.5. */
    p.cycle_first_step_size = 6;
    p.cycle_second_step_size = 2;
    p.decay_step_size = 0;                     /* no decay after the cycle */
    CU_ASSERT_EQUAL_FATAL(zero_lr_schedule_init(&s, &p), ZERO_OK);
    at(&s, 2);                                 /* x = 3/8: scale 0.5 */
    NEAR(zero_lr_schedule_lr(&s), 0.055);
    at(&s, 6);
    NEAR(zero_lr_schedule_lr(&s), 0.055);
    at(&s, 25);
    NEAR(zero_lr_schedule_lr(&s), 0.01);
    zero_lr_schedule_momentum(&s, &mom);
    NEAR(mom, 0.9);

    p.cycle_momentum = 0;
    CU_ASSERT_EQUAL_FATAL(zero_lr_schedule_init(&s, &p), ZERO_OK);
    CU_ASSERT_EQUAL(zero_lr_schedule_momentum(&s, &mom), 0);
    p.cycle_first_step_size = 0;
    CU_ASSERT_EQUAL(zero_lr_schedule_init(&s, &p), ZERO_ERR_INVALID_ARG);
}

static void test_lr_range_test(void)
{
    zero_lr_schedule_params_t p;
    zero_lr_schedule_t s;
    zero_lr_schedule_defaults(&p, ZERO_LR_RANGE_TEST);
    p.lr_range_test_min_lr = 0.001;
    p.lr_range_test_step_size = 10;
    p.lr_range_test_step_rate = 2.0;
    CU_ASSERT_EQUAL_FATAL(zero_lr_schedule_init(&s, &p), ZERO_OK);
    NEAR(zero_lr_schedule_lr(&s), 0.001);
    zero_lr_schedule_step(&s);                 /* (0 + 1) / 10 */
    NEAR(zero_lr_schedule_lr(&s), 0.0012);
    at(&s, 9);
    NEAR(zero_lr_schedule_lr(&s), 0.003);
    at(&s, 14);
    NEAR(zero_lr_schedule_lr(&s), 0.004);
    p.lr_range_test_staircase = 1;
    CU_ASSERT_EQUAL_FATAL(zero_lr_schedule_init(&s, &p), ZERO_OK);
    at(&s, 8);
    NEAR(zero_lr_schedule_lr(&s), 0.001);
    at(&s, 9);
    NEAR(zero_lr_schedule_lr(&s), 0.003);
    at(&s, 18);
    NEAR(zero_lr_schedule_lr(&s), 0.003);
    at(&s, 19);
    NEAR(zero_lr_schedule_lr(&s), 0.005);
}

static void test_constant_and_state(void)
{
    zero_lr_schedule_params_t p;
    zero_lr_schedule_t s, r;
    zero_lr_schedule_state_t st;
    zero_lr_schedule_defaults(&p, ZERO_LR_CONSTANT);
    p.base_lr = 0.1;
    CU_ASSERT_EQUAL_FATAL(zero_lr_schedule_init(&s, &p), ZERO_OK);
    NEAR(zero_lr_schedule_lr(&s), 0.1);
    zero_lr_schedule_step(&s);
    NEAR(zero_lr_schedule_lr(&s), 0.1);
    CU_ASSERT_EQUAL(zero_lr_schedule_set_lr(&s, 0.05), ZERO_OK);   /* per-epoch: trainer sets it */
    zero_lr_schedule_step(&s);
    NEAR(zero_lr_schedule_lr(&s), 0.05);
    CU_ASSERT_EQUAL(zero_lr_schedule_set_lr(&s, -1.0), ZERO_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(zero_lr_schedule_set_lr(&s, NAN), ZERO_ERR_INVALID_ARG);
    zero_lr_schedule_get_state(&s, &st);
    CU_ASSERT_EQUAL(st.last_batch_iteration, 1);
    CU_ASSERT_EQUAL_FATAL(zero_lr_schedule_init(&r, &p), ZERO_OK);
    CU_ASSERT_EQUAL(zero_lr_schedule_set_state(&r, &st), ZERO_OK);
    NEAR(zero_lr_schedule_lr(&r), 0.05);

    /* A resumed OneCycle continues exactly where the saved one would. */
    zero_lr_schedule_defaults(&p, ZERO_LR_ONE_CYCLE);
    p.cycle_min_lr = 0.01;
    p.cycle_max_lr = 0.1;
    p.cycle_first_step_size = 7;
    CU_ASSERT_EQUAL_FATAL(zero_lr_schedule_init(&s, &p), ZERO_OK);
    for (int i = 0; i < 5; i++)
        zero_lr_schedule_step(&s);
    zero_lr_schedule_get_state(&s, &st);
    CU_ASSERT_EQUAL_FATAL(zero_lr_schedule_init(&r, &p), ZERO_OK);
    CU_ASSERT_EQUAL(zero_lr_schedule_set_state(&r, &st), ZERO_OK);
    for (int i = 0; i < 20; i++) {
        double m1, m2;
        zero_lr_schedule_step(&s);
        zero_lr_schedule_step(&r);
        CU_ASSERT_EQUAL(zero_lr_schedule_lr(&s), zero_lr_schedule_lr(&r));
        zero_lr_schedule_momentum(&s, &m1);
        zero_lr_schedule_momentum(&r, &m2);
        CU_ASSERT_EQUAL(m1, m2);
    }
    st.last_batch_iteration = -2;
    CU_ASSERT_EQUAL(zero_lr_schedule_set_state(&r, &st), ZERO_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(zero_lr_schedule_step_to(&r, -1), ZERO_ERR_INVALID_ARG);
    p.type = (zero_lr_schedule_type_t)99;
    CU_ASSERT_EQUAL(zero_lr_schedule_init(&r, &p), ZERO_ERR_INVALID_ARG);
}

/* ---- loss scaler ---- */

static void scaler(zero_loss_scaler_t *ls, int power, int64_t window, int hysteresis, int consecutive,
                   double min_scale)
{
    zero_loss_scaler_params_t p;
    zero_loss_scaler_defaults(&p);
    p.initial_scale_power = power;
    p.scale_window = window;
    p.hysteresis = hysteresis;
    p.consecutive_hysteresis = consecutive;
    p.min_scale = min_scale;
    CU_ASSERT_EQUAL_FATAL(zero_loss_scaler_init(ls, &p), ZERO_OK);
}

static void updates(zero_loss_scaler_t *ls, int overflow, int count)
{
    for (int i = 0; i < count; i++)
        CU_ASSERT_EQUAL(zero_loss_scaler_update(ls, overflow), ZERO_OK);
}

static void test_scaler_defaults_sequence(void)
{
    zero_loss_scaler_t ls;
    zero_loss_scaler_params_t p;
    zero_loss_scaler_defaults(&p);
    CU_ASSERT_EQUAL(p.initial_scale_power, 16);
    CU_ASSERT_EQUAL(p.scale_window, 1000);
    CU_ASSERT_EQUAL(p.hysteresis, 2);
    CU_ASSERT_EQUAL(p.consecutive_hysteresis, 0);
    CU_ASSERT_EQUAL(p.min_scale, 1.0);
    scaler(&ls, 16, 1000, 2, 0, 1.0);
    CU_ASSERT_EQUAL(zero_loss_scaler_scale(&ls), 65536.0);
    updates(&ls, 1, 1);                  /* iter 0: hysteresis 2 -> 1, scale kept */
    CU_ASSERT_EQUAL(zero_loss_scaler_scale(&ls), 65536.0);
    CU_ASSERT_EQUAL(ls.state.cur_hysteresis, 1);
    CU_ASSERT_EQUAL(ls.state.last_overflow_iter, 0);
    updates(&ls, 1, 1);                  /* iter 1: halves */
    CU_ASSERT_EQUAL(zero_loss_scaler_scale(&ls), 32768.0);
    updates(&ls, 1, 1);                  /* iter 2: hysteresis stays 1 without refill: halves */
    CU_ASSERT_EQUAL(zero_loss_scaler_scale(&ls), 16384.0);
    CU_ASSERT_EQUAL(ls.state.last_overflow_iter, 2);
    updates(&ls, 0, 999);                /* iters 3..1001: 999 clean steps, no change */
    CU_ASSERT_EQUAL(zero_loss_scaler_scale(&ls), 16384.0);
    CU_ASSERT_EQUAL(ls.state.cur_hysteresis, 1);
    updates(&ls, 0, 1);                  /* iter 1002: 1002 - 2 = 1000: doubles, refills */
    CU_ASSERT_EQUAL(zero_loss_scaler_scale(&ls), 32768.0);
    CU_ASSERT_EQUAL(ls.state.cur_hysteresis, 2);
    updates(&ls, 1, 1);                  /* absorbed by hysteresis again */
    CU_ASSERT_EQUAL(zero_loss_scaler_scale(&ls), 32768.0);
    CU_ASSERT_EQUAL(ls.state.cur_iter, 1004);
}

static void test_scaler_window_doubling(void)
{
    zero_loss_scaler_t ls;
    scaler(&ls, 16, 4, 2, 0, 1.0);
    updates(&ls, 0, 3);                  /* cur_iter 0..2: (i + 1) % 4 != 0 */
    CU_ASSERT_EQUAL(zero_loss_scaler_scale(&ls), 65536.0);
    updates(&ls, 0, 1);                  /* cur_iter 3: 4 % 4 == 0 */
    CU_ASSERT_EQUAL(zero_loss_scaler_scale(&ls), 131072.0);
    updates(&ls, 0, 4);
    CU_ASSERT_EQUAL(zero_loss_scaler_scale(&ls), 262144.0);
    updates(&ls, 1, 1);                  /* cur_iter 8 overflows: hysteresis 2 -> 1 */
    updates(&ls, 0, 3);                  /* 9, 10, 11: 1..3 since the overflow */
    CU_ASSERT_EQUAL(zero_loss_scaler_scale(&ls), 262144.0);
    CU_ASSERT_EQUAL(ls.state.cur_hysteresis, 1);
    updates(&ls, 0, 1);                  /* 12 - 8 = 4 */
    CU_ASSERT_EQUAL(zero_loss_scaler_scale(&ls), 524288.0);
    CU_ASSERT_EQUAL(ls.state.cur_hysteresis, 2);
}

static void test_scaler_consecutive_hysteresis(void)
{
    zero_loss_scaler_t ls;
    /* On: a clean step refills hysteresis, so isolated overflows never lower the scale. */
    scaler(&ls, 10, 1000, 2, 1, 1.0);
    for (int i = 0; i < 5; i++) {
        updates(&ls, 1, 1);
        updates(&ls, 0, 1);
    }
    CU_ASSERT_EQUAL(zero_loss_scaler_scale(&ls), 1024.0);
    updates(&ls, 1, 2);                  /* two in a row: 2 -> 1, then halve */
    CU_ASSERT_EQUAL(zero_loss_scaler_scale(&ls), 512.0);
    updates(&ls, 1, 1);
    CU_ASSERT_EQUAL(zero_loss_scaler_scale(&ls), 256.0);
    updates(&ls, 0, 1);
    CU_ASSERT_EQUAL(ls.state.cur_hysteresis, 2);
    /* Off: the same alternating pattern halves at the second isolated overflow. */
    scaler(&ls, 10, 1000, 2, 0, 1.0);
    updates(&ls, 1, 1);
    updates(&ls, 0, 1);
    CU_ASSERT_EQUAL(zero_loss_scaler_scale(&ls), 1024.0);
    updates(&ls, 1, 1);
    CU_ASSERT_EQUAL(zero_loss_scaler_scale(&ls), 512.0);
    /* Hysteresis 1: every overflow halves. */
    scaler(&ls, 10, 1000, 1, 0, 1.0);
    updates(&ls, 1, 3);
    CU_ASSERT_EQUAL(zero_loss_scaler_scale(&ls), 128.0);
}

static void test_scaler_min_scale(void)
{
    zero_loss_scaler_t ls;
    zero_loss_scaler_state_t before, after;
    zero_loss_scaler_params_t p;
    ZERO_TEST_MEM_MARK();
    scaler(&ls, 2, 1000, 1, 0, 1.0);     /* 4 -> 2 -> 1 -> error */
    updates(&ls, 1, 2);
    CU_ASSERT_EQUAL(zero_loss_scaler_scale(&ls), 1.0);
    zero_loss_scaler_get_state(&ls, &before);
    CU_ASSERT_EQUAL(zero_loss_scaler_update(&ls, 1), ZERO_ERR_LOSS_SCALE);
    zero_loss_scaler_get_state(&ls, &after);
    CU_ASSERT_EQUAL(after.cur_scale, before.cur_scale);
    CU_ASSERT_EQUAL(after.cur_iter, before.cur_iter);      /* state unchanged on error */
    /* min_scale not a power of two: clamped to it, then the error. */
    scaler(&ls, 2, 1000, 1, 0, 3.0);
    updates(&ls, 1, 1);
    CU_ASSERT_EQUAL(zero_loss_scaler_scale(&ls), 3.0);
    CU_ASSERT_EQUAL(zero_loss_scaler_update(&ls, 1), ZERO_ERR_LOSS_SCALE);
    /* With the error turned off the scale just stays at the minimum. */
    zero_loss_scaler_defaults(&p);
    p.initial_scale_power = 0;
    p.hysteresis = 1;
    p.raise_error_at_min_scale = 0;
    CU_ASSERT_EQUAL_FATAL(zero_loss_scaler_init(&ls, &p), ZERO_OK);
    updates(&ls, 1, 3);
    CU_ASSERT_EQUAL(zero_loss_scaler_scale(&ls), 1.0);
    ZERO_TEST_ASSERT_NO_LEAK();
}

static void test_scaler_static_and_state(void)
{
    zero_loss_scaler_t ls, other;
    zero_loss_scaler_params_t p;
    zero_loss_scaler_state_t st;
    zero_loss_scaler_defaults(&p);
    p.dynamic = 0;
    p.static_scale = 128.0;
    CU_ASSERT_EQUAL_FATAL(zero_loss_scaler_init(&ls, &p), ZERO_OK);
    updates(&ls, 1, 5);
    updates(&ls, 0, 5000);
    CU_ASSERT_EQUAL(zero_loss_scaler_scale(&ls), 128.0);
    p.static_scale = 0.0;
    CU_ASSERT_EQUAL(zero_loss_scaler_init(&ls, &p), ZERO_ERR_INVALID_ARG);

    /* Save / restore mid-sequence and continue identically. */
    scaler(&ls, 12, 3, 2, 0, 1.0);
    updates(&ls, 1, 1);
    updates(&ls, 0, 2);
    zero_loss_scaler_get_state(&ls, &st);
    scaler(&other, 12, 3, 2, 0, 1.0);
    CU_ASSERT_EQUAL(zero_loss_scaler_set_state(&other, &st), ZERO_OK);
    for (int i = 0; i < 20; i++) {
        int overflow = i % 5 == 1;
        CU_ASSERT_EQUAL(zero_loss_scaler_update(&ls, overflow), ZERO_OK);
        CU_ASSERT_EQUAL(zero_loss_scaler_update(&other, overflow), ZERO_OK);
        CU_ASSERT_EQUAL(zero_loss_scaler_scale(&ls), zero_loss_scaler_scale(&other));
    }
    st.cur_scale = -1.0;
    CU_ASSERT_EQUAL(zero_loss_scaler_set_state(&other, &st), ZERO_ERR_INVALID_ARG);
    st.cur_scale = 8.0;
    st.cur_hysteresis = 3;               /* above the configured hysteresis */
    CU_ASSERT_EQUAL(zero_loss_scaler_set_state(&other, &st), ZERO_ERR_INVALID_ARG);
    zero_loss_scaler_defaults(&p);
    p.scale_window = 0;
    CU_ASSERT_EQUAL(zero_loss_scaler_init(&ls, &p), ZERO_ERR_INVALID_ARG);
}

static CU_TestInfo sched_tests[] = {
    {"WarmupLR (log, linear, short warmup)", test_warmup_lr},
    {"WarmupDecayLR", test_warmup_decay_lr},
    {"WarmupCosineLR", test_warmup_cosine_lr},
    {"OneCycle with momentum cycling", test_one_cycle},
    {"LRRangeTest continuous and staircase", test_lr_range_test},
    {"constant schedule, manual lr, state round trip", test_constant_and_state},
    CU_TEST_INFO_NULL,
};

static CU_TestInfo scaler_tests[] = {
    {"defaults: hysteresis 2, window 1000", test_scaler_defaults_sequence},
    {"window doubling", test_scaler_window_doubling},
    {"consecutive hysteresis on/off, hysteresis 1", test_scaler_consecutive_hysteresis},
    {"min scale error", test_scaler_min_scale},
    {"static scale, state round trip", test_scaler_static_and_state},
    CU_TEST_INFO_NULL,
};

static CU_SuiteInfo suites[] = {
    {"lr schedules", NULL, NULL, NULL, NULL, sched_tests},
    {"loss scaler", NULL, NULL, NULL, NULL, scaler_tests},
    CU_SUITE_INFO_NULL,
};

int main(int argc, char **argv)
{
    return zero_test_main(argc, argv, suites);
}
