/* Adversarial building blocks. Gradient reversal: in a joint step the classifier's parameter
 * gradient is -lambda times the gradient of L_adv alone (to rounding), the adversary's gradient
 * equals that of L_adv alone, and lambda can change between steps. */
#define ADVNN_IMPLEMENTATION
#include "advnn.h"
#include "harness.h"
#include "gradcheck.h"

/* x -> classifier dense(4 tanh) -> dense(1) = z -> [reverse(lambda)] -> adversary dense(3 tanh) -> dense(1)
 * losses: BCE(z, y) with coefficient c_clf, MSE(adversary, m) with coefficient 1. */
typedef struct { fixture f; int rev, loss_clf, clf_last; } grl_net;

static grl_net make_grl(float lambda) {
    grl_net n;
    advnn__rng r;
    int four = 4, one = 1, x, y, m, h, z, a;
    memset(&n, 0, sizeof n);
    advnn__rng_seed(&r, 3);
    n.f.g = advnn_graph_new(); n.f.d = advnn_dataset_new();
    x = advnn_input(n.f.g, "x", 1, &four);
    y = advnn_input(n.f.g, "y", 1, &one);
    m = advnn_input(n.f.g, "m", 1, &one);
    advnn_group(n.f.g, "clf");
    h = advnn_dense(n.f.g, x, 4, ADVNN_ACT_TANH);
    z = n.clf_last = advnn_dense(n.f.g, h, 1, ADVNN_ACT_LINEAR);
    n.loss_clf = advnn_loss_bce_logits(n.f.g, z, y, -1);
    advnn_group(n.f.g, "adv");
    n.rev = advnn_grad_reverse(n.f.g, z, lambda);
    a = advnn_dense(n.f.g, advnn_dense(n.f.g, n.rev, 3, ADVNN_ACT_TANH), 1, ADVNN_ACT_LINEAR);
    advnn_loss_mse(n.f.g, a, m, -1);
    add_data(&n.f, "x", rand_tensor(&r, NB, 4, -2, 2));
    add_data(&n.f, "y", rand_tensor(&r, NB, 1, 0, 1));
    add_data(&n.f, "m", rand_tensor(&r, NB, 1, -1, 1));
    CHECK(advnn_graph_finalize(n.f.g, 9) == ADVNN_OK, "%s", advnn_last_error());
    return n;
}

/* Parameter gradients of one joint backward pass (copied out). */
static float *joint_grads(grl_net *n) {
    advnn_trainer *tr = advnn_trainer_new(n->f.g, NB, 1);
    int64_t idx[NB];
    int i;
    float *gr = (float *)malloc((size_t)n->f.g->n_params * sizeof(float));
    for (i = 0; i < NB; i++) idx[i] = i;
    objective(tr, n->f.d, idx);
    advnn__backward(tr->ws, NB);
    memcpy(gr, tr->ws->pgrad, (size_t)n->f.g->n_params * sizeof(float));
    advnn_trainer_free(tr);
    return gr;
}

static void test_grad_reverse_joint_step(void) {
    const float lambda = 2.5f;
    grl_net n = make_grl(lambda);
    float *joint, *adv_only, *plain;
    int k, clf_blocks = 0;
    double maxrel = 0;
    advnn_loss_scale(n.f.g, n.loss_clf, 0.0f);           /* L_adv alone through the reversal */
    adv_only = joint_grads(&n);
    advnn_set_grad_reverse(n.f.g, n.rev, -1.0f);          /* -lambda = 1: the plain gradient of L_adv */
    plain = joint_grads(&n);
    for (k = 0; k < n.f.g->n_par; k++) {
        const advnn__param *p = &n.f.g->par[k];
        int64_t j;
        for (j = 0; j < p->size; j++) {
            double a = adv_only[p->off + j], b = plain[p->off + j];
            if (p->group == advnn__find_group(n.f.g, "clf")) {
                /* scaling by -2.5 does not commute exactly with float rounding: each of the ~10 roundings
                 * along dense backward, tanh' and the GEMM sums contributes up to 6e-8 relative */
                CHECK(fabs(a - (-lambda) * b) <= 4e-6 * fabs(lambda * b) + 1e-9, "classifier block %d: %g vs -lambda * %g", k, a, b);
                if (b != 0) maxrel = fmax(maxrel, fabs(a / (-lambda * b) - 1));
            } else
                CHECK(a == b, "adversary block %d: %g differs from the plain gradient %g", k, a, b);
        }
        clf_blocks += p->group == advnn__find_group(n.f.g, "clf");
    }
    CHECK(clf_blocks == 4, "expected 4 classifier blocks, found %d", clf_blocks);
    /* the joint objective: classifier gradient = grad L_clf - lambda grad L_adv */
    advnn_loss_scale(n.f.g, n.loss_clf, 1.0f);
    advnn_set_grad_reverse(n.f.g, n.rev, lambda);
    joint = joint_grads(&n);
    advnn_set_grad_reverse(n.f.g, n.rev, 0.0f);
    {
        float *clf_only = joint_grads(&n);   /* lambda 0: only L_clf reaches the classifier */
        for (k = 0; k < n.f.g->n_par; k++) {
            const advnn__param *p = &n.f.g->par[k];
            int64_t j;
            if (p->group != advnn__find_group(n.f.g, "clf")) continue;
            for (j = 0; j < p->size; j++) {
                double want = (double)clf_only[p->off + j] + adv_only[p->off + j];
                CHECK(fabs(joint[p->off + j] - want) <= 4e-6 * (fabs(want) + fabs(adv_only[p->off + j])) + 1e-9,
                      "joint classifier gradient %g, expected %g", joint[p->off + j], want);
            }
        }
        free(clf_only);
    }
    printf("     max relative deviation from -lambda * grad: %.2g\n", maxrel);
    free(joint); free(adv_only); free(plain);
    free_fixture(&n.f);
}

/* Bad uses are refused, and lambda travels with the model file. */
static void test_grad_reverse_errors_and_file(void) {
    grl_net n = make_grl(1.0f);
    void *buf;
    size_t len;
    advnn_graph *h;
    CHECK(advnn_set_grad_reverse(n.f.g, n.clf_last, 1.0f) == ADVNN_ERR_ARG, "set_grad_reverse on a dense node accepted");
    CHECK(advnn_set_grad_reverse(n.f.g, n.rev, NAN) == ADVNN_ERR_ARG, "NaN lambda accepted");
    advnn_set_grad_reverse(n.f.g, n.rev, 3.0f);
    CHECK(advnn_model_save_mem(n.f.g, &buf, &len) == ADVNN_OK, "%s", advnn_last_error());
    h = advnn_model_load_mem(buf, len);
    CHECK(h && h->nodes[n.rev].kind == ADVNN__GRAD_REVERSE && h->nodes[n.rev].fp[0] == 3.0f, "lambda not kept by the model file");
    advnn_graph_free(h);
    free(buf);
    free_fixture(&n.f);
}

int main(void) {
    RUN(test_grad_reverse_joint_step);
    RUN(test_grad_reverse_errors_and_file);
    return th_report();
}
